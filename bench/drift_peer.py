"""The drift benchmark's peer: Evidently's DataDriftPreset on the same two files as nbmill.

From the project's environment, ``ensure_evidently_venv`` makes Evidently's own virtual
environment (``.bench-venvs/evidently``) and ``run_evidently`` runs this file there as a script:

    .bench-venvs/evidently/bin/python bench/drift_peer.py REFERENCE CURRENT

which prints one JSON line: wall time (load and report), load time, the process's peak RSS,
the columns Evidently flags as drifted and, per column, its test, score and threshold.

    .venv/bin/python bench/drift_peer.py --self-test [--rows 20000]

makes a small data set (bench/drift_data.py) and runs the peer on it.
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EVIDENTLY_VENV = ROOT / ".bench-venvs" / "evidently"
EVIDENTLY_PYTHON = EVIDENTLY_VENV / "bin" / "python"
REQUIREMENTS = ["evidently>=0.7,<0.8", "pandas<3", "pyarrow"]


def _uv() -> str:
    """The uv binary: on PATH, else the project's own copy."""
    return shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")


def ensure_evidently_venv(log: Callable[[str], None] = print) -> str | None:
    """Make (or reuse) .bench-venvs/evidently; None when ready, else a sentence saying why not."""
    stamp = EVIDENTLY_VENV / "bench-requirements.json"
    if (
        EVIDENTLY_PYTHON.exists()
        and stamp.exists()
        and json.loads(stamp.read_text()) == REQUIREMENTS
    ):
        return None
    log(f"setting up {EVIDENTLY_VENV} ({' '.join(REQUIREMENTS)}); this takes a minute")
    steps = []
    if not EVIDENTLY_PYTHON.exists():
        steps.append([_uv(), "venv", "-q", "--python", sys.executable, str(EVIDENTLY_VENV)])
    steps.append([_uv(), "pip", "install", "-q", "--python", str(EVIDENTLY_PYTHON), *REQUIREMENTS])
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"`{shlex.join(step)}` could not run: {exc}"
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            return f"`{shlex.join(step)}` failed:\n{tail}"
    stamp.write_text(json.dumps(REQUIREMENTS))
    return None


# Evidently's distance tests flag drift when the score reaches the threshold, its p-value tests
# when the score is below it (evidently.legacy.calculations.stattests). These are the distance
# ones; the default tests are wasserstein and jensenshannon (over 1000 rows), ks, chisquare and z.
DISTANCE_TESTS = {"wasserstein", "jensenshannon", "psi", "kl_div", "hellinger", "ed"}


def _peak_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _kinds(frame: Any) -> tuple[list[str], list[str]]:
    """Numeric and categorical columns of a DataFrame, by dtype."""
    numeric = [name for name in frame.columns if frame[name].dtype.kind in "fiu"]
    return numeric, [name for name in frame.columns if name not in numeric]


def measure(
    reference: Path, current: Path, numeric: list[str] | None, categorical: list[str] | None
) -> dict[str, Any]:
    """Load both files and run Evidently's DataDriftPreset with its defaults (Evidently's
    environment only); the figures and results ``run_evidently`` returns."""
    started = time.perf_counter()
    import evidently
    from drift_data import load
    from evidently import DataDefinition, Dataset, Report
    from evidently.legacy.calculations.stattests.registry import _registered_stat_tests
    from evidently.presets import DataDriftPreset

    imported = time.perf_counter()
    import_rss = _peak_rss_mib()
    ref_frame, cur_frame = load(reference), load(current)
    loaded = time.perf_counter()
    if numeric is None or categorical is None:
        numeric, categorical = _kinds(ref_frame)
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    snapshot = Report([DataDriftPreset()]).run(
        current_data=Dataset.from_pandas(cur_frame, data_definition=definition),
        reference_data=Dataset.from_pandas(ref_frame, data_definition=definition),
    )
    done = time.perf_counter()
    names = {
        test.display_name: test.name
        for tests in _registered_stat_tests.values()
        for test in tests.values()
    }
    scores: dict[str, list[Any]] = {}
    drifted, count = [], None
    metrics = snapshot.dict()["metrics"]
    extracted = time.perf_counter()
    for metric in metrics:
        config = metric["config"]
        if config["type"].endswith(":DriftedColumnsCount"):
            count = int(metric["value"]["count"])
        elif config["type"].endswith(":ValueDrift"):
            test = names.get(config["method"], config["method"])
            score, threshold = float(metric["value"]), float(config["threshold"])
            scores[config["column"]] = [test, score, threshold]
            distance = test in DISTANCE_TESTS
            if (score >= threshold) if distance else (score < threshold):
                drifted.append(config["column"])
    return {
        "seconds": done - imported,
        "load_seconds": loaded - imported,
        "report_seconds": done - loaded,
        "dict_seconds": extracted - done,  # snapshot.dict(), after the timed part
        "import_seconds": imported - started,
        "peak_rss_mib": _peak_rss_mib(),
        "import_peak_rss_mib": import_rss,
        "drifted": sorted(drifted),
        "drifted_count": count,  # Evidently's own DriftedColumnsCount, to check "drifted"
        "scores": scores,
        "rows": [len(ref_frame), len(cur_frame)],
        "evidently": evidently.__version__,
    }


def run_evidently(
    reference: Path,
    current: Path,
    numeric: list[str] | None = None,
    categorical: list[str] | None = None,
    timeout: float = 3600,
) -> dict[str, Any]:
    """Run this file in Evidently's environment on the two files; its JSON line as a dict,
    with ``process_seconds``, the child's wall time from start to exit, added."""
    argv = [str(EVIDENTLY_PYTHON), str(Path(__file__).resolve()), str(reference), str(current)]
    if numeric is not None and categorical is not None:
        argv += ["--numeric", ",".join(numeric), "--categorical", ",".join(categorical)]
    env = {**os.environ, "DO_NOT_TRACK": "1", "PYTHONWARNINGS": "ignore"}
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"`{shlex.join(argv)}` failed ({done.returncode}):\n{tail}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_seconds"] = elapsed
    return result


def self_test(rows: int, folder: Path) -> int:
    """Make a small data set, run the peer on it and print the result; 0 when Evidently flags
    exactly the shifted columns."""
    import drift_data

    why = ensure_evidently_venv(print)
    if why is not None:
        print(why)
        return 1
    started = time.perf_counter()
    data = drift_data.make(folder, rows=rows)
    print(f"data: {rows} rows a table in {time.perf_counter() - started:.2f} s, {data.reference}")
    result = run_evidently(data.reference, data.current, data.numeric, data.categorical)
    print(json.dumps(result, indent=1))
    ok = result["drifted"] == sorted(data.shifted) and result["drifted_count"] == len(data.shifted)
    print("flagged exactly the shifted columns" if ok else f"expected {sorted(data.shifted)}")
    return 0 if ok else 1


def _names(text: str | None) -> list[str] | None:
    """A comma-separated list of column names (None when not given)."""
    return None if text is None else [name for name in text.split(",") if name]


def main(argv: list[str] | None = None) -> int:
    """``REFERENCE CURRENT`` (in Evidently's environment): print the JSON line; ``--self-test``
    (in the project's environment): make data and run the peer on it."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reference", type=Path, nargs="?")
    parser.add_argument("current", type=Path, nargs="?")
    parser.add_argument("--numeric", help="comma-separated; default: the float and int columns")
    parser.add_argument("--categorical", help="comma-separated; default: the other columns")
    parser.add_argument("--self-test", action="store_true")
    parser.add_argument("--rows", type=int, default=20_000, help="rows a table for --self-test")
    parser.add_argument("--folder", type=Path, default=ROOT / "bench" / "results" / "drift-data")
    args = parser.parse_args(argv)
    if args.self_test:
        return self_test(args.rows, args.folder)
    if args.reference is None or args.current is None:
        parser.error("REFERENCE and CURRENT are needed (or --self-test)")
    result = measure(args.reference, args.current, _names(args.numeric), _names(args.categorical))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
