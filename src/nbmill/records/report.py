"""Static HTML for reviewers: a run's index page, the index of all runs and the ledger.

Jinja2 templates (``templates/``, autoescaped) fed by pure functions of run.json dicts and ledger
entries, plus ``write_site`` at the edge. Links are relative, so the pages work straight from
the file system.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from nbmill._fs import write_atomic
from nbmill.records.review import key_metric_names

HASH_SHOWN = 12


@cache
def _environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["tojson_sorted"] = lambda value: json.dumps(value, sort_keys=True)
    env.globals.update(href=_href, number=_number, seconds=_seconds)
    return env


def _render(template: str, **context: Any) -> str:
    return _environment().get_template(template).render(**context)


def _href(*parts: str) -> str:
    """A relative link from path segments, each percent-encoded (escaped by the template)."""
    return "/".join(quote(str(part)) for part in parts)


def _number(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _seconds(value: Any) -> str:
    return f"{value:.1f} s" if value else ""


def run_index_html(run: dict[str, Any]) -> str:
    """The page a reviewer opens first: who, why, status, each step linked, metrics."""
    return _render("run.html.j2", run=run)


def site_html(runs: list[dict[str, Any]], key_metrics: list[str] | None = None) -> str:
    """Every run, newest first as given: linked to its report and its steps' notebooks."""
    counts: dict[str, int] = {}
    for run in runs:
        counts[str(run.get("status"))] = counts.get(str(run.get("status")), 0) + 1
    return _render(
        "runs.html.j2",
        runs=runs,
        metric_names=key_metric_names(runs, key_metrics),
        counts=sorted(counts.items()),
    )


def ledger_html(entries: list[dict[str, Any]], run_ids: set[str] | None = None) -> str:
    """The ledger as a table, in order; subjects ``runs/<id>`` of known runs link to their
    report."""
    rows = []
    for entry in entries:
        event = entry.get("event") or {}
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        subject = str(event.get("subject") or "")
        run_id = subject.removeprefix("runs/")
        known = run_ids is not None and subject.startswith("runs/") and run_id in run_ids
        rows.append(
            {
                "seq": entry.get("seq", ""),
                "time": event.get("time") or "",
                "type": event.get("type") or "",
                "subject": subject,
                "link": _href(run_id, "index.html") if known else None,
                "who": data.get("who") or "",
                "hash": str(entry.get("hash") or ""),
            }
        )
    return _render("ledger.html.j2", rows=rows, hash_shown=HASH_SHOWN)


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
