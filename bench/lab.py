"""JupyterLab's side: from Run to the first step starting, and the runs list with 2,000 runs.

    .venv/bin/python bench/lab.py [--repeat 3] [--runs 2000]

1. Start to first step: the default pipeline (every step executed: ``--force-all``) started
   from a terminal (``nbmill run``, timed from the process's start) and from JupyterLab (the
   POST the sidebar's Run button sends, timed from the request), alternating; the figure is
   the time until run.json says the first step started. A click adds only the browser's own
   fetch to the request.
2. The runs list: a project with ``--runs`` run folders (copies of one real record, each its
   own id); ``GET /nbmill/api/runs`` (every run, as the CLI lists them) and ``?limit=20`` (what
   the sidebar asks for), the first request and the median of ten after it, beside ``nbmill
   runs --json`` from a terminal. The first ``?limit=20`` is sent as soon as the server
   answers (the panel's first request: read before the server's warm-up has read them all);
   the first full list 2 s later.
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
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.jupyter import Jupyter  # noqa: E402
from tests.test_lab_browser import copy_project  # noqa: E402


def started_at(run_dir: Path) -> float:
    data = json.loads((run_dir / "run.json").read_text())
    first = min(s["started_at"] for s in data["steps"].values() if s.get("started_at"))
    return datetime.fromisoformat(first.replace("Z", "+00:00")).timestamp()


def newest(runs: Path, before: set[str]) -> Path:
    (new,) = [p for p in runs.iterdir() if (p / "run.json").is_file() and p.name not in before]
    return new


def runs_now(runs: Path) -> set[str]:
    return {p.name for p in runs.iterdir()} if runs.exists() else set()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="nbmill-bench-lab-"))
    project = copy_project(base / "project")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{base / 'mlflow.db'}"
    runs = project / "runs"
    server = Jupyter(project)
    terminal, lab = [], []
    try:
        for _ in range(args.repeat):
            before = runs_now(runs)
            began = time.time()
            subprocess.run(
                [sys.executable, "-m", "nbmill", "run", "pipelines/training.yml", "--force-all",
                 "--reason", "bench"], cwd=project, check=True, capture_output=True,
            )  # fmt: skip
            terminal.append(started_at(newest(runs, before)) - began)
            before = runs_now(runs)
            began = time.time()
            _, job = server.call(
                "POST",
                "/nbmill/api/runs",
                {"pipeline": "pipelines/training.yml", "force_all": True, "reason": "bench"},
            )
            while server.call("GET", f"/nbmill/api/jobs/{job['id']}")[1]["state"] == "running":
                time.sleep(0.2)
            lab.append(started_at(newest(runs, before)) - began)
        record = sorted(p for p in runs.iterdir() if (p / "run.json").is_file())[-1]
    finally:
        server.stop()

    many = base / "many"
    (many / "pipelines").mkdir(parents=True)
    data = json.loads((record / "run.json").read_text())
    for n in range(args.runs):
        run_id = f"{record.name[:15]}{n:06d}Z-bench{n:04d}"
        (many / "runs" / run_id).mkdir(parents=True)
        data["id"] = run_id
        (many / "runs" / run_id / "run.json").write_text(json.dumps(data))
    server = Jupyter(many)
    listing = {}
    try:
        for query in ("?limit=20", ""):
            if not query:
                time.sleep(2)
            began = time.perf_counter()
            _, rows = server.call("GET", f"/nbmill/api/runs{query}")
            first = time.perf_counter() - began
            assert len(rows) == (args.runs if not query else 20)
            warm = []
            for _ in range(10):
                began = time.perf_counter()
                server.call("GET", f"/nbmill/api/runs{query}")
                warm.append(time.perf_counter() - began)
            listing[query] = (first, statistics.median(warm))
    finally:
        server.stop()
    cli = []
    for _ in range(args.repeat):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "nbmill", "runs", "--json"], cwd=many, check=True,
                       capture_output=True)  # fmt: skip
        cli.append(time.perf_counter() - began)
    shutil.rmtree(base, ignore_errors=True)

    each = ", ".join(f"{t:.2f}" for t in terminal), ", ".join(f"{t:.2f}" for t in lab)
    print(f"start to first step (median of {args.repeat}; each run: {each[0]} s in a terminal, "
          f"{each[1]} s from Lab)")  # fmt: skip
    print(f"  nbmill run, terminal            {statistics.median(terminal):6.2f} s")
    print(f"  Run from JupyterLab (the POST)  {statistics.median(lab):6.2f} s")
    print(f"runs list, {args.runs} runs               first      then (median of 10)")
    for query, (first, warm) in listing.items():
        print(f"  GET /nbmill/api/runs{query:<10}  {first * 1000:7.0f} ms  {warm * 1000:7.0f} ms")
    print(f"  nbmill runs --json (terminal)   {statistics.median(cli) * 1000:7.0f} ms")


if __name__ == "__main__":
    main()
