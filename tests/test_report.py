"""The run's report as a reviewer reads it: the gate's decision, the model versions, the images,
what changed since the previous run and the lineage on the run page; the notebook pages sharing
one stylesheet; the runs index with its trends and filters. Built from real run folders: records
validated by the run.json format, a hash-chained ledger, notebooks rendered by nbconvert."""

from __future__ import annotations

import base64
import html
import json
import re
import struct
import zlib
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from nbmill.governance.ledger import Ledger
from nbmill.records import render, report
from nbmill.records.record import RunRecord
from nbmill.records.render import SHARED_CSS, SHARED_JS, render_html
from nbmill.records.report import run_index_html, site_html, sparkline, write_run_page
from nbmill.records.review import list_runs

FIRST = "20261129T021206971Z-fb1dc8"  # training, version 1 promoted
MONITOR = "20261129T030000000Z-a0a0a0"  # monitoring, between the two training runs
SECOND = "20261129T031500002Z-0a11ce"  # training, alpha 0.3, version 2 not promoted
MODEL = "diabetes-ridge"


def sha(char: str) -> str:
    return char * 64


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A real PNG of one colour (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20">'
    '<rect width="40" height="20" fill="#0a0"/></svg>'
)
MAGENTA = (0xE0, 0x10, 0xC0)


def gate_decision(version: str, promoted: bool, reason: str, production: str | None) -> dict:
    """What the evaluate step writes to eval/gate.json."""
    moves = [
        {"model": MODEL, "version": version, "alias": alias, "previous_version": None}
        for alias in (["staging", "production"] if promoted else [])
    ]
    return {
        "model": MODEL,
        "candidate_version": version,
        "promoted": promoted,
        "reason": reason,
        "metric": "r2",
        "greater_is_better": True,
        "min_improvement": 0.01,
        "candidate_score": 0.4541 if promoted else 0.4312,
        "production_version": production,
        "production_score": 0.4541 if production else None,
        "delta": -0.0229 if production else None,
        "improvement": -0.0229 if production else None,
        "moves": moves,
    }


def make_record(
    runs_dir: Path,
    run_id: str,
    *,
    pipeline: str = "training",
    alpha: float = 1.0,
    r2: float = 0.4541,
    version: float = 1.0,
    promoted: float = 1.0,
    train_csv: str = sha("1"),
    why: str = "baseline",
    status: str = "completed",
) -> RunRecord:
    """A run folder as the runner leaves it, saved through RunRecord (so run.json is valid)."""
    started = f"{run_id[:4]}-{run_id[4:6]}-{run_id[6:8]}T{run_id[9:11]}:{run_id[11:13]}:00.000Z"

    def step(
        name: str, params: dict, inputs: dict, outputs: dict, metrics: dict, products=None
    ) -> dict:
        return {
            **({"products": products} if products else {}),
            "status": "completed",
            "notebook": f"notebooks/{name}.ipynb",
            "params": params,
            "started_at": started,
            "ended_at": started,
            "duration_s": 2.5,
            "inputs": inputs,
            "outputs": outputs,
            "metrics": metrics,
            "executed": f"notebooks/{name}.ipynb",
            "html": f"html/{name}.html",
        }

    if pipeline == "training":
        steps = {
            "prep": step("prep", {"seed": 42}, {}, {"data/train.csv": train_csv}, {"rows": 353.0}),
            "train": step(
                "train",
                {"alpha": alpha},
                {"data/train.csv": train_csv},
                {"model/model.skops": sha("m")},
                {"model_version": version, "train_r2": 0.5276},
                {"model": "model"},
            ),
            "evaluate": step(
                "evaluate",
                {"metric": "r2"},
                {"model/model.skops": sha("m")},
                {"eval/gate.json": sha("g"), "eval/predicted_vs_actual.png": sha("p")},
                {"candidate_version": version, "promoted": promoted, "test_r2": r2},
                {"gate": "eval/gate.json"},
            ),
        }
    else:
        steps = {"monitor": step("monitor", {}, {}, {}, {"alerts": 2.0})}
    data = {
        "schema": 1,
        "id": run_id,
        "status": status,
        "pipeline": {"name": pipeline, "file": f"pipelines/{pipeline}.yml", "sha256": sha("9")},
        "params_file": None,
        "started_at": started,
        "ended_at": started,
        "duration_s": 12.5,
        "who": "Ada Lovelace <ada@example.com>",
        "why": why,
        "git": {"commit": "1bcd6f2a42a1" + "0" * 28, "dirty": False, "branch": "main"},
        "host": "vm",
        "python": "3.11.7",
        "platform": "Linux",
        "ci": {},
        "steps": steps,
        "metrics": {f"{n}.{k}": v for n, s in steps.items() for k, v in s["metrics"].items()},
        "error": None,
        "environment": {
            "fingerprint": sha("e"),
            "distributions": 140,
            "file": "environment.txt",
            "executable": "/venv/bin/python",
        },
    }
    folder = runs_dir / run_id
    folder.mkdir(parents=True)
    return RunRecord.from_data(folder, data).save()


def model_event(kind: str, run_id: str, version: str, **data) -> dict:
    return {
        "specversion": "1.0",
        "id": f"{kind}-{run_id}-{data.get('alias', '')}",
        "source": "nbmill",
        "type": f"nbmill.model.{kind}",
        "time": "2026-11-29T02:12:30.000Z",
        "subject": f"models/{MODEL}/{version}",
        "datacontenttype": "application/json",
        "data": {"model": MODEL, "version": version, "run_id": run_id, "who": "ada", **data},
    }


def build_runs(runs: Path) -> Path:
    """Two training runs (the second changes alpha and the data, and is not promoted) with a
    monitoring run between them, each with its gate.json and plot, and the ledger's events."""
    make_record(runs, FIRST)
    make_record(runs, MONITOR, pipeline="monitoring", why="weekly drift check")
    make_record(
        runs,
        SECOND,
        alpha=0.3,
        r2=0.4312,
        version=2.0,
        promoted=0.0,
        train_csv=sha("3"),
        why="try a smaller alpha",
    )
    for run_id, decision in (
        (FIRST, gate_decision("1", True, "no production model yet", None)),
        (SECOND, gate_decision("2", False, "r2 0.4312 does not beat production v1's", "1")),
    ):
        (runs / run_id / "eval").mkdir()
        (runs / run_id / "eval" / "gate.json").write_text(json.dumps(decision, indent=2))
        (runs / run_id / "eval" / "predicted_vs_actual.png").write_bytes(png(40, 30, MAGENTA))
    ledger = Ledger(runs / "ledger.jsonl")
    for event in (
        model_event("registered", FIRST, "1", artifacts_sha256=sha("a")),
        model_event("promoted", FIRST, "1", alias="staging", previous_version=None),
        model_event("promoted", FIRST, "1", alias="production", previous_version=None),
        model_event("deployed", FIRST, "1", target="local", smoke_test={"rows": 89}),
        model_event("registered", SECOND, "2", artifacts_sha256=sha("b")),
    ):
        ledger.append(event)
    return runs


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    return build_runs(tmp_path / "runs")


def page_of(runs_dir: Path, run_id: str, **options) -> str:
    return write_run_page(runs_dir / run_id, **options).read_text(encoding="utf-8")


def section(page: str, heading_id: str) -> str:
    """The HTML of one section of the run page, from its heading to the next."""
    start = page.index(f'<h2 id="{heading_id}">')
    end = page.find("<h2", start + 1)
    return page[start : end if end > 0 else None]


def text(page: str) -> str:
    """What a reader sees of some HTML: tags become spaces, entities characters."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


# -- the run page -------------------------------------------------------------------------------


def test_the_run_page_shows_the_gate_verdict_why_and_both_scores(runs_dir):
    gate = text(section(page_of(runs_dir, SECOND), "gate"))
    assert "not promoted : r2 0.4312 does not beat production v1's" in gate
    assert "candidate version 2: 0.4312" in gate
    assert "production version 1: 0.4541" in gate
    assert "improvement -0.0229 (required: more than 0.01)" in gate
    assert "aliases moved none" in gate
    first = text(section(page_of(runs_dir, FIRST), "gate"))
    assert first.startswith("Gate promoted : no production model yet")
    assert "production none" in first
    assert "staging to version 1 (before: none), production to version 1" in first


def test_the_run_page_names_the_versions_this_run_registered_and_the_aliases_it_set(runs_dir):
    first = text(section(page_of(runs_dir, FIRST), "model"))
    assert f"{MODEL} 1 2026-11-29T02:12:30.000Z by ada" in first
    assert "staging (before: none), production (before: none)" in first
    assert "local at 2026-11-29T02:12:30.000Z, smoke test on 89 rows" in first
    second = text(section(page_of(runs_dir, SECOND), "model"))
    assert f"{MODEL} 2" in second and "none no" in second  # no alias moved, not deployed
    assert f"{MODEL} 1" not in second  # the first run's version is not this run's
    assert "train.model_version = 2" in second and "evaluate.promoted = 0" in second


def test_without_ledger_events_the_model_comes_from_the_step_metrics(runs_dir):
    (runs_dir / "ledger.jsonl").unlink()
    model = text(section(page_of(runs_dir, FIRST), "model"))
    assert "No model events of this run in the ledger" in model
    assert "train.model_version = 1" in model and "evaluate.candidate_version = 1" in model


def test_the_images_the_steps_wrote_are_inlined_in_the_page(runs_dir):
    (runs_dir / FIRST / "eval" / "residuals.svg").write_text(SVG)
    (runs_dir / FIRST / ".hidden").mkdir()
    (runs_dir / FIRST / ".hidden" / "x.png").write_bytes(png(2, 2, (0, 0, 0)))
    images = section(page_of(runs_dir, FIRST), "images")
    sources = re.findall(r'<img src="([^"]+)" alt="([^"]+)"', images)
    assert [alt for _, alt in sources] == ["eval/predicted_vs_actual.png", "eval/residuals.svg"]
    kinds_and_bytes = [
        (src.split(";")[0], base64.b64decode(src.split(",", 1)[1])) for src, _ in sources
    ]
    assert kinds_and_bytes == [
        ("data:image/png", png(40, 30, MAGENTA)),
        ("data:image/svg+xml", SVG.encode()),
    ]


def test_an_image_too_large_to_inline_is_linked(runs_dir, monkeypatch):
    monkeypatch.setattr(report, "MAX_INLINE_IMAGE", 100)
    images = section(page_of(runs_dir, FIRST), "images")
    assert '<img src="eval/predicted_vs_actual.png"' in images and "base64" not in images


def test_the_run_page_shows_what_changed_since_the_previous_run_of_its_pipeline(runs_dir):
    changes = section(page_of(runs_dir, SECOND), "changes")
    assert f'href="../{FIRST}/index.html"' in changes  # not the monitoring run in between
    assert MONITOR not in changes
    words = text(changes)
    assert "train alpha 1.0 0.3" in words
    assert "evaluate.test_r2 0.4541 0.4312 -0.0229" in words
    assert "evaluate.promoted 1 0 -1" in words
    assert f"data/train.csv {sha('1')[:12]} {sha('3')[:12]}" in words
    assert "commit 1bcd6f2a42a1 1bcd6f2a42a1 same" in words
    assert "environment eeeeeeeeeeee eeeeeeeeeeee same" in words
    assert "This is the first run of pipeline training" in text(
        section(page_of(runs_dir, FIRST), "changes")
    )
    assert "first run of pipeline monitoring" in text(
        section(page_of(runs_dir, MONITOR), "changes")
    )


def test_a_rerun_with_nothing_changed_says_so(runs_dir):
    third = "20261129T040000000Z-0b0b0b"
    make_record(
        runs_dir,
        third,
        alpha=0.3,
        r2=0.4312,
        version=2.0,
        promoted=0.0,
        train_csv=sha("3"),
    )
    changes = text(section(page_of(runs_dir, third), "changes"))
    assert f"Previous run of training : {SECOND} ( completed" in changes
    assert "Nothing changed" in changes and "Parameters" not in changes


LINEAGE = {
    "target": f"runs/{SECOND}",
    "links": [
        {
            "kind": "run",
            "label": SECOND,
            "detail": "training completed",
            "sha256": None,
            "ok": True,
        },
        {
            "kind": "data",
            "label": "data/train.csv",
            "detail": "changed: now 0123456789ab",
            "sha256": sha("3"),
            "ok": False,
        },
        {
            "kind": "model",
            "label": f"{MODEL}/2",
            "detail": "registered",
            "sha256": sha("b"),
            "ok": None,
        },
        {
            "kind": "gate",
            "label": "<img src=x onerror=alert(1)>",
            "detail": "not promoted",
            "sha256": sha("g"),
            "ok": True,
        },
    ],
}


def test_the_lineage_lists_every_link_and_marks_the_broken_one(runs_dir):
    lineage = section(page_of(runs_dir, SECOND, lineage=LINEAGE), "lineage")
    rows = re.findall(r'<tr class="(\w+)">(.*?)</tr>', lineage, re.S)
    assert [state for state, _ in rows] == ["ok", "broken", "unchecked", "ok"]
    broken = text(rows[1][1])
    assert broken == f"data data/train.csv changed: now 0123456789ab {sha('3')[:12]} ✗ broken"
    assert "✗ broken" not in text(rows[0][1]) + text(rows[2][1]) + text(rows[3][1])
    assert "4 link(s), 1 broken" in text(lineage)
    assert "<img src=x" not in lineage and "&lt;img src=x" in lineage  # a label is text


def test_without_lineage_there_is_no_lineage_section(runs_dir):
    page = page_of(runs_dir, SECOND)
    assert 'id="lineage"' not in page and "Lineage" not in page


def test_an_unreadable_gate_file_or_ledger_is_said_on_the_page(runs_dir):
    (runs_dir / SECOND / "eval" / "gate.json").write_text('{"model": ')
    (runs_dir / "ledger.jsonl").write_text("not json\n")
    page = page_of(runs_dir, SECOND)
    assert 'id="gate"' not in page
    notes = text(page[page.index('<ul class="notes">') :])
    assert "eval/gate.json: not a readable gate decision" in notes
    assert "ledger.jsonl: the ledger could not be read" in notes and ":1: not a JSON line" in notes


def test_user_text_on_the_run_page_is_escaped(runs_dir):
    decision = gate_decision("2", False, "<script>document.title='pwned'</script>", "1")
    (runs_dir / SECOND / "eval" / "gate.json").write_text(json.dumps(decision))
    page = page_of(runs_dir, SECOND)
    assert "<script>" not in page and "&lt;script&gt;document.title" in page


def test_run_index_html_with_only_the_run_json_still_renders_the_basics(runs_dir):
    page = run_index_html(list_runs(runs_dir)[0])
    assert f"Run <code>{SECOND}</code>" in page and 'id="steps"' in page
    assert 'id="gate"' not in page and 'id="images"' not in page
    assert 'id="changes"' not in page  # nobody looked for a previous run


def test_write_run_page_writes_only_the_index(runs_dir):
    before = sorted(p for p in (runs_dir / SECOND).rglob("*"))
    target = write_run_page(runs_dir / SECOND, ledger=runs_dir / "ledger.jsonl")
    assert target == runs_dir / SECOND / "index.html"
    assert sorted(p for p in (runs_dir / SECOND).rglob("*")) == sorted([*before, target])


# -- notebook pages -----------------------------------------------------------------------------


def executed_notebook(path: Path, title: str) -> Path:
    """A notebook as papermill leaves it: code with outputs (text, a table, an image)."""
    table = new_output(
        "execute_result",
        data={
            "text/html": "<style scoped>.dataframe td {color: #123456}</style>"
            '<table class="dataframe"><tr><td>1</td></tr></table>',
            "text/plain": "   a\n0  1",
        },
        execution_count=2,
    )
    image = new_output(
        "display_data",
        data={"image/png": base64.b64encode(png(30, 20, MAGENTA)).decode(), "text/plain": "fig"},
    )
    nb = new_notebook(
        cells=[
            new_markdown_cell(f"# {title}\n\nWhat this step does, in $x^2$ words."),
            new_code_cell(
                "print('hello')",
                execution_count=1,
                outputs=[new_output("stream", name="stdout", text="hello\n")],
            ),  # fmt: skip
            new_code_cell("df", execution_count=2, outputs=[table]),
            new_code_cell("plot()", execution_count=3, outputs=[image]),
        ],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def stock_page(notebook: Path) -> str:
    """The page nbconvert's own exporter makes, everything inlined."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name=render.TEMPLATE).from_notebook_node(
        nbformat.read(notebook, as_version=4)
    )
    return body


@pytest.fixture
def pages(tmp_path: Path) -> Path:
    """html/ of a run folder with two rendered notebook pages."""
    run_dir = tmp_path / "run"
    for step in ("prep", "train"):
        notebook = executed_notebook(run_dir / "notebooks" / f"{step}.ipynb", step)
        render_html(notebook, run_dir / "html" / f"{step}.html")
    return run_dir / "html"


def test_notebook_pages_link_one_shared_stylesheet_and_script_beside_them(pages):
    assert sorted(p.name for p in pages.iterdir()) == [
        SHARED_CSS,
        SHARED_JS,
        "prep.html",
        "train.html",
    ]
    css = (pages / SHARED_CSS).read_text(encoding="utf-8")
    assert "--jp-layout-color0" in css and ".jp-OutputArea" in css and ".highlight" in css
    assert len(css) > 100_000  # JupyterLab's stylesheet, written once
    for name in ("prep.html", "train.html"):
        page = (pages / name).read_text(encoding="utf-8")
        assert len(page) < 20_000, name
        assert page.count(f'<link rel="stylesheet" href="{SHARED_CSS}"/>') == 1
        assert page.count(f'<script defer src="{SHARED_JS}"></script>') == 1
        assert "--jp-layout-color0" not in page and 'type="module"' not in page
        assert ".dataframe td {color: #123456}" in page  # what the notebook adds stays here
        assert "data:image/png;base64," in page  # its images stay inline


def test_a_page_is_nbconverts_page_with_the_shared_elements_swapped_for_links(pages):
    import rcssmin

    """The shared files hold exactly what nbconvert inlines, and the link stands where the
    first style stood: the cascade is the same, so the page looks as it did."""
    assets = render.shared_assets()
    expected = stock_page(pages.parent / "notebooks" / "train.ipynb")
    for n, style in enumerate(assets.styles):
        assert expected.count(style) == 1
        link = f'<link rel="stylesheet" href="{SHARED_CSS}"/>'
        expected = expected.replace(style, link if n == 0 else "")
    (script,) = assets.scripts
    expected = expected.replace(script, f'<script defer src="{SHARED_JS}"></script>')
    assert (pages / "train.html").read_text(encoding="utf-8") == expected
    css = (pages / SHARED_CSS).read_text(encoding="utf-8")
    inner = [re.match(r"<style[^>]*>(.*)</style>$", s, re.S).group(1) for s in assets.styles]
    assert css == render.CHARSET + rcssmin.cssmin("\n".join(inner))  # the same rules, minified
    js = (pages / SHARED_JS).read_text(encoding="utf-8")
    assert script == f'<script type="module">{js}</script>'


def test_a_stale_shared_file_is_rewritten(pages):
    (pages / SHARED_CSS).write_text("body{}")
    render_html(pages.parent / "notebooks" / "prep.ipynb", pages / "prep.html")
    assert (pages / SHARED_CSS).read_text(encoding="utf-8") == render.shared_assets().css


# -- the runs index -----------------------------------------------------------------------------


def polylines(page: str) -> dict[str, list[tuple[float, float]]]:
    """Each sparkline's points, by the metric named in its label."""
    found = {}
    spark = (
        r'<svg class="spark"[^>]*aria-label="([^"]+) over \d+ run\(s\)"'
        r'.*?<polyline points="([^"]*)"'
    )
    for label, points in re.findall(spark, page, re.S):
        found[label] = [tuple(float(v) for v in p.split(",")) for p in points.split()]
    return found


def test_each_key_metric_has_a_sparkline_with_one_point_per_run_that_recorded_it(runs_dir):
    make_record(runs_dir, "20261129T040000000Z-0b0b0b", r2=0.5012, version=3.0)
    page = site_html(list_runs(runs_dir), ["evaluate.test_r2", "monitor.alerts"])
    lines = polylines(page)
    r2 = lines["evaluate.test_r2"]
    assert len(r2) == 3  # three training runs; the monitoring run has no test_r2
    xs = [x for x, _ in r2]
    assert xs == sorted(xs)  # oldest first, left to right
    # 0.4541, 0.4312, 0.5012: the lowest is drawn lowest (largest y), the newest highest
    assert r2[1][1] == max(y for _, y in r2) and r2[2][1] == min(y for _, y in r2)
    assert len(lines["monitor.alerts"]) == 1
    assert 'data-points="3"' in page and 'data-points="1"' in page
    assert "http" not in page  # an inline SVG needs no namespace URL, nothing is fetched


def test_a_sparkline_skips_missing_and_non_finite_values_and_draws_equal_ones_flat():
    trend = sparkline([1.0, None, float("nan"), 1.0, float("inf"), 1, True])
    assert trend["count"] == 3
    ys = {float(p.split(",")[1]) for p in trend["points"].split()}
    assert ys == {report.SPARK_HEIGHT / 2}
    assert sparkline([None, "x"]) is None


def test_the_runs_index_filters_by_status_and_pipeline(runs_dir):
    make_record(runs_dir, "20261129T040000000Z-0b0b0b", status="failed", why="broke")
    page = site_html(list_runs(runs_dir))
    rows = re.findall(r'<tr class="run" data-status="(\w+)" data-pipeline="(\w+)">', page)
    assert rows == [
        ("failed", "training"),
        ("completed", "training"),
        ("completed", "monitoring"),
        ("completed", "training"),
    ]
    options = re.findall(r'<option value="(\w*)">([^<]+)</option>', page)
    assert options == [
        ("", "all"),
        ("completed", "completed (3)"),
        ("failed", "failed (1)"),
        ("", "all"),
        ("monitoring", "monitoring (1)"),
        ("training", "training (3)"),
    ]
    assert '<form class="filters" id="filters" hidden>' in page  # shown by its script
    assert 'getElementById("filter-status")' in page and "row.hidden" in page
