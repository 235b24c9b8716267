"""The archive's cost: pushing a default run's record, and `nbmill runs` over 1,000 archived runs.

    .venv/bin/python bench/archive.py [--runs 1000] [--repeat 3]

Azure Blob Storage is Azurite (installed by `make test`) on 127.0.0.1, so the figures are the
client's and the protocol's cost without a network's latency; a real account adds a round trip
per request (the README's bench notes say how many requests each operation makes).

1. The training pipeline runs once, with no archive (its own runs folder and MLflow store),
   timed: the run the push is compared with.
2. Its record is pushed, timed, to a new container (every file sent), again (nothing sent: one
   read of the manifest), and to a local folder.
3. The record is copied to ``--runs`` runs (each its own id and run.json; the other files are
   the same bytes, so the archive stores them once, as it would a team's unchanged data), all
   pushed with ``nbmill archive push``, timed.
4. ``nbmill runs`` from a folder with no runs of its own: with an empty mirror (every manifest
   fetched), with a warm mirror (one listing), and, side by side, ``nbmill runs`` over the same
   runs in a local runs folder (no archive).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.azurite import Azurite  # noqa: E402

NBMILL = [str(ROOT / ".venv" / "bin" / "nbmill")]


def timed(argv: list[str], cwd: Path, env: dict) -> tuple[float, subprocess.CompletedProcess]:
    began = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    return took, done


def copies(record: Path, runs_dir: Path, count: int) -> list[str]:
    """``count`` sealed records like ``record``, each with its own id (in run.json too)."""
    data = json.loads((record / "run.json").read_text())
    ids = []
    for n in range(count):
        run_id = f"{record.name[:15]}{n:06d}Z-bench{n:04d}"
        target = runs_dir / run_id
        shutil.copytree(record, target)
        data["id"] = run_id
        (target / "run.json").write_text(json.dumps(data, indent=1))
        ids.append(run_id)
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="nbmill-bench-archive-"))
    emulator = Azurite(base / "azurite")
    env = {**os.environ, "AZURE_STORAGE_CONNECTION_STRING": emulator.connection_string,
           "MLFLOW_TRACKING_URI": f"sqlite:///{base}/mlflow.db", "NBMILL_ARCHIVE": ""}  # fmt: skip
    os.environ.update(env)
    rows: list[tuple[str, str]] = []
    try:
        run_env = {**env, "NBMILL_RUNS_DIR": str(base / "runs")}
        took, _ = timed([*NBMILL, "run", "pipelines/training.yml", "--reason", "bench"], ROOT,
                        run_env)  # fmt: skip
        (record,) = [p for p in (base / "runs").iterdir() if (p / "run.json").is_file()]
        files = [p for p in record.rglob("*") if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        rows.append((f"nbmill run (the default pipeline; {len(files)} files, "
                     f"{size / 1e6:.1f} MB in its record)", f"{took:.2f} s"))  # fmt: skip

        from nbmill.archive import open_archive
        from nbmill.archive.records import push

        first, again, local = [], [], []
        for _ in range(args.repeat):
            archive = open_archive(f"az://{emulator.new_container()}/team")
            began = time.perf_counter()
            push(archive, record)
            first.append(time.perf_counter() - began)
            began = time.perf_counter()
            push(archive, record)
            again.append(time.perf_counter() - began)
            folder = open_archive(str(base / f"folder-{len(local)}"))
            began = time.perf_counter()
            push(folder, record)
            local.append(time.perf_counter() - began)
        rows.append(("push to Azure Blob (Azurite), every file sent",
                     f"{statistics.median(first) * 1000:.0f} ms"))  # fmt: skip
        rows.append(("push again (already there: nothing sent)",
                     f"{statistics.median(again) * 1000:.0f} ms"))  # fmt: skip
        rows.append(("push to a local folder", f"{statistics.median(local) * 1000:.0f} ms"))

        agent = base / "agent"
        agent.mkdir()
        (agent / "pipelines").mkdir()
        ids = copies(record, agent / "runs", args.runs)
        container = f"az://{emulator.new_container()}/team"
        took, _ = timed([*NBMILL, "archive", "push", "--archive", container, *ids], agent, env)
        rows.append((f"nbmill archive push of {args.runs} runs", f"{took:.1f} s"))

        reader = base / "reader"
        (reader / "pipelines").mkdir(parents=True)
        cold, _ = timed([*NBMILL, "runs", "--json", "--archive", container], reader, env)
        warm = []
        for _ in range(args.repeat):
            took, listed = timed([*NBMILL, "runs", "--json", "--archive", container], reader, env)
            warm.append(took)
        assert len(json.loads(listed.stdout)) == args.runs
        local_runs = []
        for _ in range(args.repeat):
            took, listed = timed([*NBMILL, "runs", "--json"], agent, env)
            local_runs.append(took)
        assert len(json.loads(listed.stdout)) == args.runs
        rows.append((f"nbmill runs, {args.runs} archived runs, empty mirror", f"{cold:.2f} s"))
        rows.append((f"nbmill runs, {args.runs} archived runs, warm mirror",
                     f"{statistics.median(warm):.2f} s"))  # fmt: skip
        rows.append((f"nbmill runs, the same {args.runs} runs in a local runs folder",
                     f"{statistics.median(local_runs):.2f} s"))  # fmt: skip
    finally:
        emulator.stop()
        shutil.rmtree(base, ignore_errors=True)
    width = max(len(name) for name, _ in rows)
    print(f"{'':<{width}}  median of {args.repeat}")
    for name, value in rows:
        print(f"{name:<{width}}  {value:>10}")


if __name__ == "__main__":
    main()
