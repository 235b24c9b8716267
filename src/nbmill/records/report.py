"""Static HTML for reviewers: a run's index page, the index of all runs and the ledger.

Jinja2 templates (``templates/``, autoescaped) fed by pure functions of run.json dicts, gate
decisions and ledger events, plus the edges that read them from the run folder and write the
pages (``write_run_page``, ``write_site``). Links are relative and images are inlined, so the
pages work straight from the file system, wherever the folder is copied.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from nbmill._fs import write_atomic
from nbmill.errors import NbmillError
from nbmill.records.lineage import MODEL_EVENTS
from nbmill.records.review import diff_runs, is_number, key_metric_names, load_run
from nbmill.records.runjson import GATE, INDEX_HTML, products, run_dirs

HASH_SHOWN = 12
IMAGE_TYPES = {".png": "image/png", ".svg": "image/svg+xml"}
MAX_INLINE_IMAGE = 2 * 1024 * 1024  # a larger image is linked rather than inlined
# Step metrics that name the model (when the ledger has no events for the run)
MODEL_METRICS = ("model_version", "candidate_version", "promoted")
SPARK_WIDTH, SPARK_HEIGHT, SPARK_PAD = 96, 22, 2


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
    env.globals.update(
        href=_href, number=_number, seconds=_seconds, value=_value, hash_shown=HASH_SHOWN
    )
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


def _value(value: Any) -> str:
    """A value as a reviewer reads it: floats to 6 significant digits, a dash for none."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _seconds(value: Any) -> str:
    return f"{value:.1f} s" if value else ""


# -- the run page -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    """An image a step wrote: its path in the run folder and what the page's ``<img>`` shows
    (a data URI, or the relative path when the image is too large to inline)."""

    path: str
    src: str


def model_versions(run: dict[str, Any], events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each model version this run registered, promoted or deployed, from the ledger's events
    whose data names this run: registered when and by whom, the aliases it got, where it went."""
    versions: dict[tuple[str, str], dict[str, Any]] = {}
    for event in events:
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        if event.get("type") not in MODEL_EVENTS or data.get("run_id") != run.get("id"):
            continue
        key = (str(data.get("model")), str(data.get("version")))
        entry = versions.setdefault(
            key,
            {"model": key[0], "version": key[1], "registered": None, "aliases": [], "deployed": []},
        )
        kind = event["type"].rsplit(".", 1)[1]
        if kind == "registered":
            entry["registered"] = {
                "time": event.get("time"),
                "who": data.get("who"),
                "sha256": data.get("artifacts_sha256"),
            }
        elif kind == "promoted":
            entry["aliases"].append(
                {
                    "alias": data.get("alias"),
                    "previous": data.get("previous_version"),
                    "why": data.get("decision") or data.get("why"),
                }
            )
        else:
            smoke = data.get("smoke_test") if isinstance(data.get("smoke_test"), dict) else {}
            entry["deployed"].append(
                {"target": data.get("target"), "time": event.get("time"), "smoke": smoke}
            )
    return list(versions.values())


def model_metrics(run: dict[str, Any]) -> dict[str, float]:
    """The step metrics that name the model version (``train.model_version``,
    ``evaluate.candidate_version``, ``evaluate.promoted``)."""
    return {
        name: value
        for name, value in (run.get("metrics") or {}).items()
        if name.rsplit(".", 1)[-1] in MODEL_METRICS
    }


def changes(previous: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """What changed from the previous run of the pipeline to this one (``diff_runs``), with a
    flag for whether anything did."""
    diff = diff_runs(previous, run)
    same = (
        not diff["params"]
        and not diff["metrics"]
        and not diff["data"]
        and all(diff[part]["same"] for part in ("environment", "commit", "pipeline"))
    )
    return {**diff, "nothing": same}


def lineage_rows(lineage: dict[str, Any]) -> dict[str, Any]:
    """The lineage's links as rows, each with its state: ``ok``, ``broken`` (ok is False) or
    ``unchecked`` (ok is None)."""
    rows = []
    for link in lineage.get("links") or []:
        ok = link.get("ok")
        state = "unchecked" if ok is None else "ok" if ok else "broken"
        rows.append({**link, "state": state})
    return {
        "target": lineage.get("target"),
        "rows": rows,
        "broken": sum(1 for row in rows if row["state"] == "broken"),
    }


def run_index_html(
    run: dict[str, Any],
    *,
    gates: Sequence[tuple[str, dict[str, Any]]] = (),
    images: Sequence[Image] = (),
    events: Sequence[dict[str, Any]] = (),
    previous: dict[str, Any] | None = None,
    first: bool = False,
    lineage: dict[str, Any] | None = None,
    notes: Sequence[str] = (),
) -> str:
    """The page a reviewer opens first: who, why, status, the gate's decision and why, the
    model versions, each step linked, metrics, what changed since the previous run, the images
    the steps wrote and the lineage.

    ``gates`` are (path, decision) pairs of the run's gate decisions; ``events`` the
    ledger's events (those of this run are picked); ``previous`` the run.json of the previous
    run of the same pipeline, or ``first`` when there is none (neither: no such section);
    ``lineage`` a ``{"target", "links"}`` dict (no section if None); ``notes`` say what could
    not be read."""
    return _render(
        "run.html.j2",
        run=run,
        gates=list(gates),
        models=model_versions(run, list(events)),
        model_metrics=model_metrics(run),
        images=list(images),
        previous=previous,
        first=first and previous is None,
        diff=changes(previous, run) if previous is not None else None,
        lineage=lineage_rows(lineage) if lineage is not None else None,
        notes=list(notes),
    )


def read_gates(
    run_dir: Path, run: dict[str, Any], notes: list[str]
) -> list[tuple[str, dict[str, Any]]]:
    """The gate decisions the run's steps recorded (``tracking.record_product("gate", ...)``),
    by path (an unreadable one becomes a note)."""
    gates = []
    for rel in products(run, GATE):
        path = Path(run_dir) / rel
        try:
            decision = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            notes.append(f"{rel}: not a readable gate decision ({exc})")
            continue
        if isinstance(decision, dict):
            gates.append((rel, decision))
        else:
            notes.append(f"{rel}: not a gate decision (expected a JSON object)")
    return gates


def read_images(run_dir: Path) -> list[Image]:
    """The PNG and SVG files in the run folder, by path, each inlined as a data URI."""
    run_dir = Path(run_dir)
    images = []
    for path in sorted(p for p in run_dir.rglob("*") if p.suffix.lower() in IMAGE_TYPES):
        rel = path.relative_to(run_dir)
        if not path.is_file() or any(part.startswith(".") for part in rel.parts):
            continue
        if path.stat().st_size > MAX_INLINE_IMAGE:
            images.append(Image(rel.as_posix(), _href(*rel.parts)))
            continue
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        kind = IMAGE_TYPES[path.suffix.lower()]
        images.append(Image(rel.as_posix(), f"data:{kind};base64,{data}"))
    return images


def read_events(ledger: Path, notes: list[str]) -> list[dict[str, Any]]:
    """The ledger's events ([] without a ledger; an unreadable one becomes a note)."""
    from nbmill.governance.ledger import Ledger

    try:
        return Ledger(Path(ledger)).events()
    except (NbmillError, OSError, KeyError, TypeError) as exc:
        notes.append(f"{ledger}: the ledger could not be read ({exc})")
        return []


def previous_run(run_dir: Path, run: dict[str, Any], notes: list[str]) -> dict[str, Any] | None:
    """The newest run of the same pipeline that started before this one, in the same runs
    folder (a record that cannot be read is skipped, with a note)."""
    pipeline = (run.get("pipeline") or {}).get("name")
    for folder in run_dirs(Path(run_dir).parent):
        if folder.name >= str(run.get("id")):
            continue
        try:
            other = load_run(folder)
        except NbmillError as exc:
            notes.append(f"skipped run {folder.name} looking for the previous run: {exc}")
            continue
        if (other.get("pipeline") or {}).get("name") == pipeline:
            return other
    return None


def write_run_page(
    run_dir: Path,
    run: dict[str, Any] | None = None,
    *,
    ledger: Path | None = None,
    lineage: dict[str, Any] | None = None,
) -> Path:
    """Write ``run_dir/index.html`` atomically from the run folder (``run`` defaults to its
    run.json), the ledger (default: the project's, ``ledger:`` in nbmill.yml) and ``lineage``;
    returns its path."""
    run_dir = Path(run_dir)
    run = run if run is not None else load_run(run_dir)
    notes: list[str] = []
    if ledger is None:  # the project's, as nbmill.yml places it
        from nbmill.project.config import load_config
        from nbmill.project.spec import find_project_dir

        ledger = load_config(find_project_dir(run_dir), run_dir.parent).ledger
    previous = previous_run(run_dir, run, notes)
    page = run_index_html(
        run,
        gates=read_gates(run_dir, run, notes),
        images=read_images(run_dir),
        events=read_events(ledger, notes),
        previous=previous,
        first=previous is None,
        lineage=lineage,
        notes=notes,
    )
    target = run_dir / INDEX_HTML
    write_atomic(target, page)
    return target


# -- the runs index -----------------------------------------------------------------------------


def sparkline(values: list[Any]) -> dict[str, Any] | None:
    """A metric's trend, oldest first, as an SVG polyline's points (only finite numbers count;
    None without any): equal values draw a flat line through the middle."""
    numbers = [float(v) for v in values if is_number(v) and math.isfinite(v)]
    if not numbers:
        return None
    low, high = min(numbers), max(numbers)
    width, height = SPARK_WIDTH - 2 * SPARK_PAD, SPARK_HEIGHT - 2 * SPARK_PAD
    step = width / (len(numbers) - 1) if len(numbers) > 1 else 0
    points = []
    for n, value in enumerate(numbers):
        x = SPARK_PAD + (n * step if len(numbers) > 1 else width / 2)
        share = (value - low) / (high - low) if high > low else 0.5
        y = SPARK_PAD + height * (1 - share)
        points.append((round(x, 1), round(y, 1)))
    return {
        "points": " ".join(f"{x:g},{y:g}" for x, y in points),
        "last": points[-1],
        "count": len(numbers),
        "low": low,
        "high": high,
        "latest": numbers[-1],
        "width": SPARK_WIDTH,
        "height": SPARK_HEIGHT,
    }


def site_html(
    runs: list[dict[str, Any]],
    key_metrics: list[str] | None = None,
    changes: dict[str, list[str]] | None = None,
) -> str:
    """Every run, newest first as given: linked to its report and its steps' notebooks, with
    each key metric's trend, filters by status and pipeline, and (``changes``) links to how
    its notebooks differ from the previous run's."""
    counts: dict[str, int] = {}
    pipelines: dict[str, int] = {}
    for run in runs:
        counts[str(run.get("status"))] = counts.get(str(run.get("status")), 0) + 1
        name = str((run.get("pipeline") or {}).get("name") or "")
        pipelines[name] = pipelines.get(name, 0) + 1
    names = key_metric_names(runs, key_metrics)
    oldest_first = list(reversed(runs))
    trends = {
        name: sparkline([(run.get("metrics") or {}).get(name) for run in oldest_first])
        for name in names
    }
    return _render(
        "runs.html.j2",
        runs=runs,
        metric_names=names,
        trends=trends,
        counts=sorted(counts.items()),
        pipelines=sorted(pipelines.items()),
        changes=changes or {},
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
    return _render("ledger.html.j2", rows=rows)


DIFFS = "diffs"  # runs/diffs/<run-id>/<step>.html: how its notebooks differ from the previous run's


def notebook_changes(runs_dir: Path, runs: list[dict[str, Any]]) -> dict[str, list[str]]:
    """For each run with an earlier run of its pipeline, the steps whose executed notebooks
    differ from that run's, with nbdime's diff of each as a page in ``runs/diffs/<run-id>/``
    (outside the run folders, which are sealed). Each pair is compared once, then remembered."""
    runs_dir = Path(runs_dir)
    changes: dict[str, list[str]] = {}
    previous: dict[str, dict[str, Any]] = {}
    for run in reversed(runs):  # oldest first
        pipeline = str((run.get("pipeline") or {}).get("name"))
        before, previous[pipeline] = previous.get(pipeline), run
        if before is None:
            continue
        folder = runs_dir / DIFFS / str(run["id"])
        done = folder / "changed.json"
        if done.is_file():
            remembered = json.loads(done.read_text(encoding="utf-8"))
            if remembered.get("previous") == before["id"]:
                changes[run["id"]] = remembered["steps"]
                continue
        from nbmill.records.notebook_diff import notebook_diffs, write_html

        try:
            diffs = notebook_diffs(runs_dir / before["id"], runs_dir / run["id"])
        except NbmillError:
            continue  # a record without its notebooks: nothing to show
        if not diffs:  # no step has an executed notebook in both runs
            continue
        changed = {step: d for step, d in diffs.items() if d.changed}
        write_html(changed, folder)
        write_atomic(done, json.dumps({"previous": before["id"], "steps": sorted(changed)}))
        changes[run["id"]] = sorted(changed)
    return changes


def write_site(
    runs_dir: Path,
    runs: list[dict[str, Any]],
    entries: list[dict[str, Any]],
    key_metrics: list[str] | None = None,
) -> Path:
    """Write runs_dir/index.html and runs_dir/ledger.html atomically, and the notebook diffs of
    each run against the previous one of its pipeline; returns the index path."""
    runs_dir = Path(runs_dir)
    index = runs_dir / "index.html"
    changes = notebook_changes(runs_dir, runs)
    write_atomic(index, site_html(runs, key_metrics, changes))
    known = {str(run.get("id")) for run in runs}
    write_atomic(runs_dir / "ledger.html", ledger_html(entries, known))
    return index
