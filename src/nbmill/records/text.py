"""Terminal text for reviewers: aligned tables, one run, and the diff of two runs.

Pure functions from run.json dicts (and ``review.diff_runs``) to text.
"""

from __future__ import annotations

import json
from typing import Any

from nbmill.records.review import is_number

HASH_SHOWN = 12
ABSENT = "(absent)"


def format_value(value: Any) -> str:
    """A cell: floats to 4 significant digits, None blank, everything on one line."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return " ".join(str(value).split())


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
        all(is_number(row.get(col)) or row.get(col) is None for row in rows)
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
    return f"{value:.1f} s" if is_number(value) else ""


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
        f"  {name.ljust(name_width)}  {f'{v:.6g}' if is_number(v) else format_value(v)}"
        for name, v in metrics.items()
    ] or ["  none"]
    lines += ["", f"files  {len(run.get('files') or {})} hashed in run.json"]
    return "\n".join(lines)
