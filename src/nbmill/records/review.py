"""Reviewing runs: list, find, tabulate and compare run records (run.json dicts).

Loaders at the edge (`load_run`, `list_runs`, `find_run`) read run folders; the rest are pure
functions from run.json dicts to dicts, shared by the CLI (text.py) and the HTML report.
"""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path
from typing import Any

from nbmill.errors import NbmillError
from nbmill.records import runjson
from nbmill.records.runjson import RUN_JSON, run_dirs

KEY_METRICS_DEFAULT = 3
MAX_CANDIDATES = 5


# -- loading ------------------------------------------------------------------------------------


def load_run(run_dir: Path) -> dict[str, Any]:
    """run.json of one run folder (validated), or an NbmillError naming the file."""
    return runjson.read(run_dir)


def run_state(run: dict[str, Any]) -> str:
    """The run's status, except that a run recorded as running whose runner process is gone
    (killed, or its machine restarted) is ``abandoned``."""
    status = run.get("status", "")
    runner = run.get("runner") or {}
    if status != "running" or not runner:
        return status
    if runner.get("host") != socket.gethostname():
        return status  # another machine's run: it cannot be checked from here
    return "running" if _alive(runner.get("pid")) else "abandoned"


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():  # the pid may have been reused by another program
        return b"nbmill" in cmdline.read_bytes()
    return True


def list_runs(runs_dir: Path) -> list[dict[str, Any]]:
    """Every run's run.json, newest first (run ids sort by start time)."""
    runs = [load_run(path) for path in run_dirs(runs_dir)]
    return sorted(runs, key=lambda run: str(run["id"]), reverse=True)


def find_run(runs_dir: Path, ref: str) -> dict[str, Any]:
    """One run by full id, unique id prefix, run folder path, or `latest`."""
    dirs = run_dirs(runs_dir)
    ids = [path.name for path in dirs]
    if ref == "latest":
        if not dirs:
            raise NbmillError(f"no runs in {runs_dir} yet; start one with `nbmill run`")
        return load_run(dirs[0])
    if ref in ids:
        return load_run(dirs[ids.index(ref)])
    as_path = Path(ref)
    if as_path.name == RUN_JSON and as_path.is_file():
        return load_run(as_path.parent)
    if as_path.is_dir() and (as_path / RUN_JSON).is_file():
        return load_run(as_path)
    matches = [i for i in ids if ref and i.startswith(ref)]
    if len(matches) == 1:
        return load_run(dirs[ids.index(matches[0])])
    if matches:
        raise NbmillError(
            f"{ref!r} matches {len(matches)} runs in {runs_dir}: {_candidates(matches)}; "
            "give more of the id"
        )
    if not ids:
        raise NbmillError(f"no run {ref!r}: there are no runs in {runs_dir} yet")
    raise NbmillError(
        f"no run {ref!r} in {runs_dir}; give a run id, a unique prefix, a run folder or "
        f"'latest' (newest: {_candidates(ids)})"
    )


def _candidates(ids: list[str]) -> str:
    shown = ", ".join(ids[:MAX_CANDIDATES])
    more = len(ids) - MAX_CANDIDATES
    return shown + (f" and {more} more" if more > 0 else "")


# -- tables -------------------------------------------------------------------------------------


def key_metric_names(runs: list[dict[str, Any]], key_metrics: list[str] | None = None) -> list[str]:
    """The metric columns: `key_metrics`, else the first 3 of each run's metrics, in order."""
    if key_metrics is not None:
        return list(key_metrics)
    names: dict[str, None] = {}
    for run in runs:
        for name in list(run.get("metrics") or {})[:KEY_METRICS_DEFAULT]:
            names[name] = None
    return list(names)


def runs_table(
    runs: list[dict[str, Any]], key_metrics: list[str] | None = None
) -> list[dict[str, Any]]:
    """One row per run: id, when, who, why, status and key metrics (None where not recorded)."""
    names = key_metric_names(runs, key_metrics)
    return [
        {
            "id": run.get("id"),
            "when": run.get("started_at"),
            "who": run.get("who"),
            "why": run.get("why"),
            "status": run_state(run),
            **{name: (run.get("metrics") or {}).get(name) for name in names},
        }
        for run in runs
    ]


# -- comparing ----------------------------------------------------------------------------------


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b and type(a) is type(b)


def _changed(a: dict[str, Any], b: dict[str, Any]) -> dict[str, list[Any]]:
    """key -> [a, b] for keys whose values differ or exist on one side only (None there)."""
    keys = list(dict.fromkeys([*a, *b]))
    return {
        key: [a.get(key), b.get(key)]
        for key in keys
        if key not in a or key not in b or not _same(a[key], b[key])
    }


def data_hashes(run: dict[str, Any]) -> dict[str, str]:
    """relpath -> sha256 of every file a step read or wrote."""
    hashes: dict[str, str] = {}
    for step in (run.get("steps") or {}).values():
        hashes.update(step.get("inputs") or {})
        hashes.update(step.get("outputs") or {})
    return hashes


def diff_runs(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """What differs from run a to run b: params, metrics, data, environment, commit, pipeline."""
    steps_a, steps_b = a.get("steps") or {}, b.get("steps") or {}
    params = {}
    for step in dict.fromkeys([*steps_a, *steps_b]):
        changed = _changed(
            (steps_a.get(step) or {}).get("params") or {},
            (steps_b.get(step) or {}).get("params") or {},
        )
        if changed:
            params[step] = changed
    metrics = {
        name: {
            "a": va,
            "b": vb,
            "delta": vb - va if is_number(va) and is_number(vb) else None,
        }
        for name, (va, vb) in _changed(a.get("metrics") or {}, b.get("metrics") or {}).items()
    }
    env_a = (a.get("environment") or {}).get("fingerprint")
    env_b = (b.get("environment") or {}).get("fingerprint")
    git_a, git_b = a.get("git") or {}, b.get("git") or {}
    pipe_a = (a.get("pipeline") or {}).get("sha256")
    pipe_b = (b.get("pipeline") or {}).get("sha256")
    return {
        "runs": {
            "a": {k: a.get(k) for k in ("id", "status", "started_at", "who", "why")},
            "b": {k: b.get(k) for k in ("id", "status", "started_at", "who", "why")},
        },
        "params": params,
        "metrics": metrics,
        "data": _changed(data_hashes(a), data_hashes(b)),
        "environment": {"a": env_a, "b": env_b, "same": env_a == env_b},
        "commit": {
            "a": git_a.get("commit"),
            "b": git_b.get("commit"),
            "dirty_a": git_a.get("dirty"),
            "dirty_b": git_b.get("dirty"),
            "same": git_a.get("commit") == git_b.get("commit"),
        },
        "pipeline": {"a": pipe_a, "b": pipe_b, "same": pipe_a == pipe_b},
    }
