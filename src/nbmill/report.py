"""Static HTML for reviewers: a run's index page (pure functions from run.json to HTML)."""

from __future__ import annotations

import json
from html import escape
from typing import Any

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}
td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}code{font-size:.9em}
.completed{color:#17692e;font-weight:600}.failed{color:#b00020;font-weight:600}
.skipped,.pending,.running{color:#777}
"""


def _status(status: str) -> str:
    return f'<span class="{escape(status)}">{escape(status)}</span>'


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def run_index_html(run: dict[str, Any]) -> str:
    """The page a reviewer opens first: who, why, status, each step linked, metrics."""
    git = run.get("git") or {}
    commit = (git.get("commit") or "")[:12] + (" (dirty)" if git.get("dirty") else "")
    summary = [
        ["status", _status(run["status"])],
        ["pipeline", escape(run["pipeline"]["name"])],
        ["who", escape(run.get("who") or "")],
        ["why", escape(run.get("why") or "")],
        ["started", escape(run.get("started_at") or "")],
        ["duration", f"{run['duration_s']:.1f} s" if run.get("duration_s") else ""],
        ["commit", f"<code>{escape(commit)}</code>"],
        ["environment", f"<code>{escape(run['environment']['fingerprint'][:16])}</code>"],
    ]
    error = run.get("error")
    if error:
        summary.append(["error", escape(f"{error['step']}: {error['type']}: {error['message']}")])
    steps = []
    for name, step in run["steps"].items():
        link = (
            f'<a href="{escape(step["html"])}">{escape(name)}</a>'
            if step.get("html")
            else escape(name)
        )
        params = escape(json.dumps(step.get("params", {}), sort_keys=True))
        duration = f"{step['duration_s']:.1f} s" if step.get("duration_s") else ""
        steps.append([link, _status(step["status"]), duration, f"<code>{params}</code>"])
    metrics = [[escape(k), f"{v:.6g}"] for k, v in run.get("metrics", {}).items()]
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>run {escape(run['id'])}</title>"
        f"<style>{STYLE}</style></head><body><h1>Run <code>{escape(run['id'])}</code></h1>"
        + _table(["", ""], summary)
        + "<h2>Steps</h2>"
        + _table(["step", "status", "duration", "parameters"], steps)
        + "<h2>Metrics</h2>"
        + (_table(["metric", "value"], metrics) if metrics else "<p>none recorded</p>")
        + "<p><a href='run.json'>run.json</a> · <a href='environment.txt'>environment.txt</a></p>"
        + "</body></html>"
    )
