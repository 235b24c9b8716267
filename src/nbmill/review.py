"""Reviewing runs: list, find, tabulate, compare and describe run records (run.json dicts).

Loaders at the edge (`load_run`, `list_runs`, `find_run`) read run folders; everything else is a
pure function from run.json dicts to dicts or text, so the CLI and the HTML report share it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from nbmill.errors import NbmillError
from nbmill.record import RUN_JSON

SCRATCH = "scratch"
KEY_METRICS_DEFAULT = 3
MAX_CANDIDATES = 5
HASH_SHOWN = 12
ABSENT = "(absent)"


# -- loading ------------------------------------------------------------------------------------


def load_run(run_dir: Path) -> dict[str, Any]:
    """run.json of one run folder, or an NbmillError naming the file and what to do."""
    path = Path(run_dir) / RUN_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NbmillError(f"{run_dir}: no {RUN_JSON} here; is this a run folder?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NbmillError(
            f"{path}: not valid JSON ({exc}); restore it from the run's archived copy, or move "
            "the folder out of the runs folder"
        ) from None
    if not isinstance(data, dict) or "id" not in data:
        raise NbmillError(f"{path}: not a run record (no 'id'); is this a run folder?")
    return data


def run_dirs(runs_dir: Path) -> list[Path]:
    """Run folders (those holding a run.json, not `scratch` or hidden ones), newest first."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    found = [
        child
        for child in runs_dir.iterdir()
        if child.is_dir()
        and child.name != SCRATCH
        and not child.name.startswith(".")
        and (child / RUN_JSON).is_file()
    ]
    return sorted(found, key=lambda p: p.name, reverse=True)


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
            "status": run.get("status"),
            **{name: (run.get("metrics") or {}).get(name) for name in names},
        }
        for run in runs
    ]


def format_value(value: Any) -> str:
    """A cell: floats to 4 significant digits, None blank, everything on one line."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return " ".join(str(value).split())


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def format_table(rows: list[dict[str, Any]], max_width: int = 60) -> str:
    """Plain aligned text: columns from the rows' keys (first row first), numbers right-aligned."""
    if not rows:
        return ""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    cells = [[_clip(format_value(row.get(col)), max_width) for col in columns] for row in rows]
    headers = list(columns)
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    numeric = [
        all(_is_number(row.get(col)) or row.get(col) is None for row in rows)
        and any(row.get(col) is not None for row in rows)
        for col in columns
    ]

    def line(values: list[str]) -> str:
        parts = [
            v.rjust(w) if right else v.ljust(w)
            for v, w, right in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in cells)])


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# -- comparing ----------------------------------------------------------------------------------


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
            "delta": vb - va if _is_number(va) and _is_number(vb) else None,
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


# -- text for a terminal ------------------------------------------------------------------------


def _short(digest: str | None) -> str:
    return digest[:HASH_SHOWN] if digest else ABSENT


def _shown(value: Any) -> str:
    return ABSENT if value is None else json.dumps(value, default=str)


def _commit(commit: str | None, dirty: bool | None) -> str:
    return (_short(commit) if commit else "unknown") + (" (dirty)" if dirty else "")


def _indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def format_diff(diff: dict[str, Any]) -> str:
    """The diff as text a reviewer reads top to bottom: what changed from a to b."""
    lines = []
    for side in ("a", "b"):
        run = diff.get("runs", {}).get(side) or {}
        lines.append(
            f"{side}: {run.get('id')}  {run.get('status')}  {run.get('started_at') or ''}  "
            f"{format_value(run.get('who'))}: {format_value(run.get('why'))}".rstrip()
        )
    lines.append("")
    pipe, env, commit = diff["pipeline"], diff["environment"], diff["commit"]
    lines.append(
        f"pipeline     same: {_short(pipe['a'])}"
        if pipe["same"]
        else f"pipeline     changed: {_short(pipe['a'])} -> {_short(pipe['b'])}"
    )
    commit_a = _commit(commit["a"], commit["dirty_a"])
    commit_b = _commit(commit["b"], commit["dirty_b"])
    lines.append(
        f"commit       same: {commit_a}"
        if commit_a == commit_b
        else f"commit       {commit_a} -> {commit_b}"
    )
    lines.append(
        f"environment  same: {_short(env['a'])}"
        if env["same"]
        else f"environment  differs: {_short(env['a'])} -> {_short(env['b'])}"
    )
    lines += ["", "params"]
    param_rows = [
        {"param": f"{step}.{key}", "a": _shown(va), "b": _shown(vb)}
        for step, changed in diff["params"].items()
        for key, (va, vb) in changed.items()
    ]
    lines.append(_indent(format_table(param_rows)) if param_rows else "  no changes")
    lines += ["", "metrics"]
    metric_rows = [
        {
            "metric": name,
            "a": m["a"],
            "b": m["b"],
            "delta": None if m["delta"] is None else f"{m['delta']:+.4g}",
        }
        for name, m in diff["metrics"].items()
    ]
    lines.append(_indent(format_table(metric_rows)) if metric_rows else "  no changes")
    lines += ["", "data (sha256)"]
    data_rows = [
        {"file": rel, "a": _short(sa), "b": _short(sb)} for rel, (sa, sb) in diff["data"].items()
    ]
    lines.append(_indent(format_table(data_rows)) if data_rows else "  no changes")
    return "\n".join(lines)


def _seconds(value: Any) -> str:
    return f"{value:.1f} s" if _is_number(value) else ""


def format_run(run: dict[str, Any]) -> str:
    """One run as text: provenance, error, steps with params, metrics (for `nbmill show`)."""
    pipeline = run.get("pipeline") or {}
    params_file = run.get("params_file") or {}
    git = run.get("git") or {}
    env = run.get("environment") or {}
    commit = _commit(git.get("commit"), git.get("dirty"))
    if git.get("branch"):
        commit += f" on {git['branch']}"
    summary = {
        "status": run.get("status"),
        "pipeline": f"{pipeline.get('name')} ({pipeline.get('file')}, "
        f"sha256 {_short(pipeline.get('sha256'))})",
        "params": f"{params_file['file']} (sha256 {_short(params_file.get('sha256'))})"
        if params_file.get("file")
        else "none",
        "who": run.get("who"),
        "why": run.get("why"),
        "started": run.get("started_at"),
        "ended": run.get("ended_at"),
        "duration": _seconds(run.get("duration_s")),
        "commit": commit,
        "host": ", ".join(
            v
            for v in (
                run.get("host"),
                f"Python {run['python']}" if run.get("python") else None,
                run.get("platform"),
            )
            if v
        ),
        "environment": f"{_short(env.get('fingerprint'))} "
        f"({env.get('distributions', '?')} distributions)",
    }
    if run.get("ci"):
        summary["ci"] = " ".join(f"{k}={v}" for k, v in run["ci"].items())
    error = run.get("error")
    if error:
        cell = f" (cell {error['cell']})" if error.get("cell") is not None else ""
        summary["error"] = f"{error.get('step')}: {error.get('type')}: {error.get('message')}{cell}"
    width = max(len(k) for k in summary)
    lines = [f"run {run.get('id')}", ""]
    lines += [f"{k.ljust(width)}  {format_value(v)}".rstrip() for k, v in summary.items()]
    steps = [
        {
            "step": name,
            "status": step.get("status"),
            "duration": _seconds(step.get("duration_s")),
            "params": " ".join(
                f"{k}={json.dumps(v, default=str)}" for k, v in (step.get("params") or {}).items()
            ),
        }
        for name, step in (run.get("steps") or {}).items()
    ]
    lines += ["", "steps", _indent(format_table(steps, max_width=80)) if steps else "  none"]
    metrics = run.get("metrics") or {}
    name_width = max((len(name) for name in metrics), default=0)
    lines += ["", "metrics"]
    lines += [
        f"  {name.ljust(name_width)}  {f'{v:.6g}' if _is_number(v) else format_value(v)}"
        for name, v in metrics.items()
    ] or ["  none"]
    lines += ["", f"files  {len(run.get('files') or {})} hashed in run.json"]
    return "\n".join(lines)
