"""The HTML report as a person sees it: real pages opened from the file system in headless Chromium.

Skipped when Chromium is not installed (on Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from nbmill.records.render import SHARED_CSS, render_html
from nbmill.records.report import run_index_html, write_run_page, write_site
from nbmill.records.review import list_runs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
RUNS = {
    "20261129T021206971Z-fb1dc8": ("completed", "baseline on the dev data"),
    "20261129T031500002Z-0a11ce": ("failed", "try a smaller alpha"),
    "20261130T090000123Z-c0ffee": ("completed", "<script>document.body.dataset.pwned=1</script>"),
}
STEPS = ("prep", "train", "evaluate")
GREEN, RED = (0x17, 0x69, 0x2E), (0xB0, 0x00, 0x20)  # .completed and .failed in report.STYLE


def synthetic_run(run_id: str, status: str, why: str) -> dict:
    """A run.json as the runner writes it; a failed run fails at its last step."""
    steps = {}
    for n, name in enumerate(STEPS):
        failed = status == "failed" and name == STEPS[-1]
        steps[name] = {
            "status": "failed" if failed else "completed",
            "notebook": f"notebooks/{name}.ipynb",
            "params": {"alpha": 0.3} if name == "train" else {},
            "started_at": "2026-11-29T02:12:44.221Z",
            "ended_at": "2026-11-29T02:12:50.655Z",
            "duration_s": 6.4 + n,
            "inputs": {},
            "outputs": {f"{name}/out.csv": "ab" * 32},
            "metrics": {} if failed else {"score": 0.5 + n / 10},
            "executed": f"notebooks/{name}.ipynb",
            "html": f"html/{name}.html",
        }
    return {
        "schema": 1,
        "id": run_id,
        "status": status,
        "pipeline": {"name": "training", "file": "pipelines/training.yml", "sha256": "9b" * 32},
        "params_file": None,
        "started_at": f"{run_id[:4]}-{run_id[4:6]}-{run_id[6:8]}T{run_id[9:11]}:00:00.000Z",
        "ended_at": None,
        "duration_s": 25.4,
        "who": "Ada Lovelace <ada@example.com>",
        "why": why,
        "git": {"commit": "1bcd6f2a42a1" * 3 + "abcd", "dirty": False, "branch": "main"},
        "host": "vm",
        "python": "3.11.7",
        "platform": "Linux",
        "ci": {},
        "steps": steps,
        "metrics": {f"{s}.{k}": v for s, step in steps.items() for k, v in step["metrics"].items()},
        "error": (
            {"step": STEPS[-1], "type": "ValueError", "message": "no rows left", "cell": 4}
            if status == "failed"
            else None
        ),
        "environment": {
            "fingerprint": "18aa" * 16,
            "distributions": 140,
            "file": "environment.txt",
            "executable": "/usr/bin/python3",
        },
        "files": {},
    }


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs folder as `nbmill run` and `nbmill report` leave it; returns runs/index.html."""
    runs_dir = tmp_path_factory.mktemp("site") / "runs"
    for run_id, (status, why) in RUNS.items():
        run = synthetic_run(run_id, status, why)
        folder = runs_dir / run_id
        (folder / "html").mkdir(parents=True)
        (folder / "run.json").write_text(json.dumps(run, indent=2))
        (folder / "index.html").write_text(run_index_html(run))
        for step in STEPS:
            (folder / "html" / f"{step}.html").write_text(
                f"<!doctype html><title>{step}</title><h1>{step} notebook of {run_id}</h1>"
            )
    entries = [
        {
            "seq": seq,
            "prev": "0" * 64,
            "hash": f"{seq:x}" * 64,
            "event": {
                "specversion": "1.0",
                "id": f"e{seq}",
                "source": "nbmill",
                "type": f"nbmill.run.{status}",
                "time": "2026-11-29T02:12:06.971Z",
                "subject": f"runs/{run_id}",
                "datacontenttype": "application/json",
                "data": {"who": "ada", "why": why, "run_id": run_id},
            },
        }
        for seq, (run_id, (status, why)) in enumerate(RUNS.items(), start=1)
    ]
    return write_site(runs_dir, list_runs(runs_dir), entries)


def chromium(tmp_path: Path, *args: str) -> str:
    """Run headless Chromium once (skipping when it is absent); returns its stdout."""
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class Page(HTMLParser):
    """What a person reads on a rendered page: its visible text and its links (text -> href)."""

    def __init__(self, dom: str):
        super().__init__()
        self.text: list[str] = []
        self.links: dict[str, str] = {}
        self._href: str | None = None
        self._hidden = 0
        self.feed(dom)

    @property
    def visible(self) -> str:
        return " ".join(" ".join(self.text).split())

    def handle_starttag(self, tag, attrs):
        if tag in ("style", "script", "title"):
            self._hidden += 1
        if tag == "a":
            self._href = dict(attrs).get("href")

    def handle_endtag(self, tag):
        if tag in ("style", "script", "title"):
            self._hidden -= 1
        if tag == "a":
            self._href = None

    def handle_data(self, data):
        if not self._hidden:
            self.text.append(data)
            if self._href and data.strip():
                self.links[data.strip()] = self._href


def open_page(tmp_path: Path, page: Path) -> tuple[str, Page]:
    dom = chromium(tmp_path, "--dump-dom", page.as_uri())
    return dom, Page(dom)


def test_the_index_shows_every_run_with_its_status_and_why(site, tmp_path):
    dom, page = open_page(tmp_path, site)
    assert page.visible.startswith("Runs Ledger of events · 3 run(s): 2 completed, 1 failed")
    for run_id, (status, why) in RUNS.items():
        assert run_id in page.links, run_id
        row = page.visible.split(run_id, 1)[1]
        assert row.lstrip().startswith(run_id[:4] + "-"), row[:80]  # the when column
        assert why in row and status in row.split(why, 1)[1][:20]
    # the <script> someone typed as their reason shows as text and does not run
    assert "<script>document.body.dataset.pwned=1</script>" in page.visible
    assert "data-pwned" not in dom
    assert page.links["Ledger of events"] == "ledger.html"


def test_following_a_run_link_shows_its_steps_and_each_step_opens(site, tmp_path):
    run_id = "20261129T031500002Z-0a11ce"
    _, index = open_page(tmp_path, site)
    run_page_path = (site.parent / index.links[run_id]).resolve()
    assert run_page_path == site.parent / run_id / "index.html"

    _, run_page = open_page(tmp_path, run_page_path)
    text = run_page.visible
    assert f"Run {run_id}" in text and "try a smaller alpha" in text
    assert "evaluate: ValueError: no rows left" in text
    for step in STEPS:
        assert step in run_page.links, step
    assert 'train completed 7.4 s {"alpha": 0.3}' in text
    assert "evaluate failed" in text

    step_page_path = run_page_path.parent / run_page.links["train"]
    assert step_page_path.is_file()
    _, step_page = open_page(tmp_path, step_page_path)
    assert f"train notebook of {run_id}" in step_page.visible


def test_the_ledger_page_lists_events_and_links_back(site, tmp_path):
    _, page = open_page(tmp_path, site.parent / "ledger.html")
    text = page.visible
    assert "3 event(s)" in text and "nbmill.run.failed" in text
    assert text.index("nbmill.run.completed") < text.index("nbmill.run.failed")
    assert page.links["All runs"] == "index.html"
    assert page.links["runs/20261130T090000123Z-c0ffee"] == "20261130T090000123Z-c0ffee/index.html"


def test_the_index_renders_statuses_in_their_colours(site, tmp_path):
    image = pytest.importorskip("PIL.Image")
    shot = tmp_path / "index.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,900", site.as_uri())
    with image.open(shot) as picture:
        assert picture.size == (1200, 900)
        colours = picture.convert("RGB").getcolors(maxcolors=1200 * 900)

    def near(colour: tuple[int, int, int]) -> int:
        return sum(
            count
            for count, px in colours
            if all(abs(p - c) <= 24 for p, c in zip(px, colour, strict=True))
        )

    assert near(GREEN) > 20 and near(RED) > 10  # "completed" in green, "failed" in red
    white = sum(count for count, px in colours if px == (255, 255, 255))
    assert 1200 * 900 // 2 < white < 1200 * 900  # a page with something on it


# -- the run page, the notebook pages and the filters, as a person sees them ----------------------


def colour_count(shot: Path, colour: tuple[int, int, int], tolerance: int = 24) -> int:
    image = pytest.importorskip("PIL.Image")
    with image.open(shot) as picture:
        colours = picture.convert("RGB").getcolors(maxcolors=picture.width * picture.height)
    return sum(
        count
        for count, px in colours
        if all(abs(p - c) <= tolerance for p, c in zip(px, colour, strict=True))
    )


def screenshot(tmp_path: Path, page: str, name: str, size: str = "1200,3000") -> Path:
    shot = tmp_path / f"{name}.png"
    chromium(tmp_path, "--hide-scrollbars", f"--screenshot={shot}", f"--window-size={size}", page)
    return shot


def test_the_run_page_shows_the_gate_decision_and_the_image_a_step_wrote(tmp_path):
    from tests.test_report import MAGENTA, SECOND, build_runs

    runs = build_runs(tmp_path / "runs")
    page = write_run_page(runs / SECOND)
    _, run_page = open_page(tmp_path, page)
    text = run_page.visible
    assert "Gate not promoted : r2 0.4312 does not beat production v1's" in text
    assert "candidate version 2: 0.4312" in text and "production version 1: 0.4541" in text
    assert "Images eval/predicted_vs_actual.png" in text
    # the 40 x 30 magenta plot, inlined, is drawn
    assert colour_count(screenshot(tmp_path, page.as_uri(), "run"), MAGENTA) >= 40 * 30


def test_a_notebook_page_looks_exactly_as_nbconverts_own_page_and_needs_its_stylesheet(tmp_path):
    from tests.test_report import executed_notebook, stock_page

    run_dir = tmp_path / "run"
    notebook = executed_notebook(run_dir / "notebooks" / "train.ipynb", "train")
    render_html(notebook, run_dir / "html" / "train.html")
    (tmp_path / "stock.html").write_text(stock_page(notebook), encoding="utf-8")

    ours = screenshot(tmp_path, (run_dir / "html" / "train.html").as_uri(), "ours", "1000,900")
    stock = screenshot(tmp_path, (tmp_path / "stock.html").as_uri(), "stock", "1000,900")
    assert ours.read_bytes() == stock.read_bytes()
    editor = (0xF5, 0xF5, 0xF5)  # JupyterLab's code cell background, from the stylesheet
    assert colour_count(ours, editor, tolerance=2) > 5_000

    (run_dir / "html" / SHARED_CSS).rename(tmp_path / "elsewhere.css")
    bare = screenshot(tmp_path, (run_dir / "html" / "train.html").as_uri(), "bare", "1000,900")
    assert colour_count(bare, editor, tolerance=2) < 500  # without it the page is unstyled


def test_the_index_filters_runs_by_the_status_in_its_address(site, tmp_path):
    _, page = open_page(tmp_path, site)
    assert "3 of 3 shown" in page.visible
    dom = chromium(tmp_path, "--dump-dom", site.as_uri() + "#status=failed")
    rows = re.findall(r'<tr class="run" data-status="(\w+)"[^>]*?( hidden="")?>', dom)
    assert rows == [("completed", ' hidden=""'), ("failed", ""), ("completed", ' hidden=""')]
    assert "1 of 3 shown" in Page(dom).visible
