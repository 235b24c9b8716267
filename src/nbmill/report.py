"""Static HTML for reviewers: a run's index page, the index of all runs and the ledger.

Pure functions from run.json dicts and ledger entries to HTML, plus `write_site` at the edge.
Every value is escaped; links are relative, so the pages work straight from the file system.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from nbmill.record import write_atomic
from nbmill.review import key_metric_names

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


# -- the site: runs/index.html (every run) and runs/ledger.html (the event ledger) -------------

SITE_STYLE = (
    STYLE
    + """
body.site{max-width:100rem;margin:1.5rem}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.site td,.site th{padding:.3rem .5rem}td.id{white-space:nowrap}td.when{min-width:5.5rem}
td.why{min-width:10rem;max-width:30rem;overflow-wrap:anywhere}td.who{overflow-wrap:anywhere}
td.steps a,td.steps span{display:block}
nav{margin:.5rem 0 1rem}.muted{color:#777}
"""
)
HASH_SHOWN = 12


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{SITE_STYLE}</style></head><body class='site'>{body}</body></html>"
    )


def _href(*parts: str) -> str:
    """A relative link from path segments, each percent-encoded, escaped for an attribute."""
    return escape("/".join(quote(part) for part in parts))


def _number(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return escape(f"{value:.4g}")
    return escape(str(value))


def _when(started_at: str | None) -> str:
    """`2026-11-29 02:12 UTC` from an ISO time, the exact time in a tooltip."""
    if not started_at:
        return ""
    shown = started_at[:16].replace("T", " ") + (" UTC" if started_at.endswith("Z") else "")
    return (
        f'<time datetime="{escape(started_at)}" title="{escape(started_at)}">{escape(shown)}</time>'
    )


def _step_links(run: dict[str, Any]) -> str:
    links = []
    for name, step in (run.get("steps") or {}).items():
        html = step.get("html")
        if html:
            target = _href(str(run["id"]), *str(html).split("/"))
            links.append(f'<a href="{target}">{escape(name)}</a>')
        else:
            links.append(f'<span class="muted">{escape(name)}</span>')
    return " ".join(links)


def site_html(runs: list[dict[str, Any]], key_metrics: list[str] | None = None) -> str:
    """Every run, newest first as given: linked to its report and its steps' notebooks."""
    names = key_metric_names(runs, key_metrics)
    rows = []
    for run in runs:
        run_id = str(run.get("id"))
        metrics = run.get("metrics") or {}
        rows.append(
            [
                f'<a href="{_href(run_id, "index.html")}"><code>{escape(run_id)}</code></a>',
                _when(run.get("started_at")),
                escape(run.get("who") or ""),
                escape(run.get("why") or ""),
                _status(str(run.get("status") or "")),
                *(_number(metrics.get(name)) for name in names),
                _step_links(run),
            ]
        )
    headers = ["run", "when", "who", "why", "status", *names, "steps"]
    counts: dict[str, int] = {}
    for run in runs:
        counts[str(run.get("status"))] = counts.get(str(run.get("status")), 0) + 1
    summary = ", ".join(f"{n} {escape(status)}" for status, n in sorted(counts.items()))
    body = (
        "<h1>Runs</h1>"
        f"<nav><a href='ledger.html'>Ledger of events</a> · {len(runs)} run(s)"
        + (f": {summary}" if summary else "")
        + "</nav>"
        + (_site_table(headers, rows, len(names)) if rows else "<p>No runs yet.</p>")
    )
    return _page("nbmill runs", body)


def _site_table(headers: list[str], rows: list[list[str]], metric_count: int) -> str:
    """Like _table, with a class on each cell by column (metrics right-aligned)."""
    classes = ["id", "when", "who", "why", "", *(["num"] * metric_count), "steps"]
    # metric names may break after a dot ("evaluate.<wbr>test_r2"), so the table stays narrow
    head = "".join(
        f"<th>{'.<wbr>'.join(escape(part) for part in h.split('.'))}</th>" for h in headers
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="{cls}">{cell}</td>' if cls else f"<td>{cell}</td>"
            for cls, cell in zip(classes, row, strict=True)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def ledger_html(entries: list[dict[str, Any]], run_ids: set[str] | None = None) -> str:
    """The ledger as a table, in order; subjects `runs/<id>` of known runs link to their report."""
    rows = []
    for entry in entries:
        event = entry.get("event") or {}
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        subject = str(event.get("subject") or "")
        run_id = subject.removeprefix("runs/")
        if run_ids is not None and subject.startswith("runs/") and run_id in run_ids:
            subject_cell = f'<a href="{_href(run_id, "index.html")}">{escape(subject)}</a>'
        else:
            subject_cell = escape(subject)
        digest = str(entry.get("hash") or "")
        rows.append(
            [
                escape(str(entry.get("seq", ""))),
                escape(str(event.get("time") or "")),
                f"<code>{escape(str(event.get('type') or ''))}</code>",
                subject_cell,
                escape(str(data.get("who") or "")),
                f'<code title="{escape(digest)}">{escape(digest[:HASH_SHOWN])}</code>',
            ]
        )
    body = (
        "<h1>Ledger</h1>"
        "<nav><a href='index.html'>All runs</a> · "
        f"{len(entries)} event(s), oldest first; run <code>nbmill verify</code> to check the "
        "hash chain</nav>"
        + (
            _table(["seq", "time", "type", "subject", "who", "hash"], rows)
            if rows
            else "<p>No events yet.</p>"
        )
    )
    return _page("nbmill ledger", body)


def write_site(
    runs_dir: Path,
    runs: list[dict[str, Any]],
    entries: list[dict[str, Any]],
    key_metrics: list[str] | None = None,
) -> Path:
    """Write runs_dir/index.html and runs_dir/ledger.html atomically; returns the index path."""
    runs_dir = Path(runs_dir)
    index = runs_dir / "index.html"
    write_atomic(index, site_html(runs, key_metrics))
    known = {str(run.get("id")) for run in runs}
    write_atomic(runs_dir / "ledger.html", ledger_html(entries, known))
    return index
