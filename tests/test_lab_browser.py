"""nbmill inside JupyterLab, as a person uses it: a real JupyterLab started here on 127.0.0.1,
driven in the machine's Chromium by Playwright. Each state is saved as a screenshot (in the test's
folder, ``screenshots/``, and under ``NBMILL_SCREENSHOTS`` when it is set).

Skipped when Chromium is not installed (on Debian: ``apt-get install chromium``)."""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, write_notebook
from tests.jupyter import Jupyter

pytest.importorskip("jupyterlab", reason="the lab dependency group is not installed")
playwright = pytest.importorskip("playwright.sync_api")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)"
    ),
]


class Shots:
    def __init__(self, folder: Path):
        self.folders = [folder]
        if os.environ.get("NBMILL_SCREENSHOTS"):
            self.folders.append(Path(os.environ["NBMILL_SCREENSHOTS"]))
        for f in self.folders:
            f.mkdir(parents=True, exist_ok=True)

    def __call__(self, page, name: str) -> None:
        for folder in self.folders:
            page.screenshot(path=str(folder / f"{name}.png"))


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def open_lab(browser, lab: Jupyter):
    page = browser.new_page(viewport={"width": 1500, "height": 950})
    page.goto(f"{lab.base}/lab?token={lab.token}")
    page.locator('.lm-TabBar-tab[data-id="nbmill-sidebar"]').click(timeout=60_000)
    page.locator("#nbmill-sidebar .nbmill-pipeline").first.wait_for(timeout=30_000)
    return page


def start(page, pipeline: str, reason: str, overrides: str = "", force: bool = True) -> None:
    row = page.locator(f'.nbmill-pipeline[data-pipeline="{pipeline}"]')
    row.locator(".nbmill-reason").fill(reason)
    row.locator(".nbmill-overrides").fill(overrides)
    if force:
        row.locator(".nbmill-force").check()
    row.locator(".nbmill-run").click()


def copy_project(target: Path) -> Path:
    """The repository's own project (its default pipeline, notebooks and params), elsewhere."""
    for name in ("pipelines", "notebooks", "params"):
        shutil.copytree(ROOT / name, target / name)
    for name in ("nbmill.yml", "environment.yml"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, target / name)
    return target


def test_run_the_default_pipeline_see_its_steps_complete_and_open_its_report_and_notebook(
    browser, tmp_path
):
    project = copy_project(tmp_path / "project")
    lab = Jupyter(
        project, "jupyterlab", {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    )
    shots = Shots(tmp_path / "screenshots")
    try:
        page = open_lab(browser, lab)
        shots(page, "1-sidebar")
        start(page, "pipelines/training.yml", "from the sidebar", force=False)
        page.locator('.nbmill-job .nbmill-step[data-status="running"]').first.wait_for(
            timeout=60_000
        )
        shots(page, "2-running")
        header = page.locator('.nbmill-job .nbmill-title [data-status="completed"]')
        header.wait_for(timeout=240_000)
        steps = page.locator(".nbmill-job .nbmill-step")
        assert steps.count() == 4
        assert {steps.nth(i).get_attribute("data-status") for i in range(4)} == {"completed"}
        shots(page, "3-completed")
        (run_id,) = [p.name for p in (project / "runs").iterdir() if (p / "run.json").is_file()]
        row = page.locator(f'.nbmill-run-row[data-run="{run_id}"]')
        with page.expect_popup() as opened:
            row.locator(".nbmill-report").click()
        report = opened.value
        report.locator(f"text={run_id}").first.wait_for(timeout=30_000)
        assert report.url.endswith(f"/files/runs/{run_id}/index.html")
        shots(report, "4-report")
        report.close()
        row.locator(".nbmill-notebooks").click()
        page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for(timeout=30_000)
        page.locator(f'.lm-TabBar-tab:has-text("train ({run_id})")').wait_for(timeout=30_000)
        kernels = urllib.request.urlopen(f"{lab.base}/api/kernels?token={lab.token}").read()
        assert json.loads(kernels) == []  # a record is read, not run: no kernel started for it
        shots(page, "5-executed-notebook")
    finally:
        lab.stop()


def tiny_project(root: Path) -> Path:
    (root / "pipelines").mkdir(parents=True)
    write_notebook(root / "notebooks" / "fine.ipynb", "x = 1", "y = x + 1")
    write_notebook(
        root / "notebooks" / "broken.ipynb",
        "divisor = 0",
        "a = 1",
        "ratio = 1 / divisor",
    )
    write_notebook(
        root / "notebooks" / "slow.ipynb", "seconds = 120.0", "import time\ntime.sleep(seconds)"
    )
    pipelines = {
        "broken": {"fine": {"notebook": "notebooks/fine.ipynb"},
                   "broken": {"notebook": "notebooks/broken.ipynb", "needs": ["fine"]}},
        "slow": {"fine": {"notebook": "notebooks/fine.ipynb"},
                 "slow": {"notebook": "notebooks/slow.ipynb", "needs": ["fine"]}},
    }  # fmt: skip
    for name, steps in pipelines.items():
        spec = {"name": name, "steps": steps}
        (root / "pipelines" / f"{name}.yml").write_text(yaml.safe_dump(spec))
    return root


def test_a_failing_step_shows_its_cell_and_error_and_a_cancelled_run_is_interrupted(
    browser, tmp_path
):
    project = tiny_project(tmp_path / "project")
    lab = Jupyter(project, "jupyterlab", {})
    shots = Shots(tmp_path / "screenshots")
    try:
        page = open_lab(browser, lab)
        start(page, "pipelines/broken.yml", "break it")
        failure = page.locator(".nbmill-job .nbmill-failure")
        failure.wait_for(timeout=120_000)
        text = failure.inner_text()
        assert "broken" in text and "ZeroDivisionError" in text and "cell" in text
        assert (
            page.locator('.nbmill-job .nbmill-step[data-step="broken"]').get_attribute(
                "data-status"
            )
            == "failed"
        )
        shots(page, "6-failed")
        start(page, "pipelines/slow.yml", "cancel it")
        page.locator('.nbmill-job .nbmill-step[data-step="slow"][data-status="running"]').wait_for(
            timeout=120_000
        )
        page.locator(".nbmill-job .nbmill-cancel").click()
        page.locator('.nbmill-job .nbmill-title [data-status="interrupted"]').wait_for(
            timeout=60_000
        )
        shots(page, "7-interrupted")
    finally:
        lab.stop()


def test_a_parameters_cell_edited_to_an_unknown_name_is_warned_about(browser, tmp_path):
    project = tiny_project(tmp_path / "project")
    spec = yaml.safe_load((project / "pipelines" / "broken.yml").read_text())
    spec["steps"]["broken"]["params"] = {"divisor": 2}
    (project / "pipelines" / "broken.yml").write_text(yaml.safe_dump(spec))
    lab = Jupyter(project, "jupyterlab", {})
    shots = Shots(tmp_path / "screenshots")
    try:
        page = open_lab(browser, lab)
        page.goto(f"{lab.base}/lab/tree/notebooks/broken.ipynb?token={lab.token}")
        page.locator('.lm-TabBar-tab[data-id="nbmill-sidebar"]').click(timeout=60_000)
        use = page.locator('.nbmill-notebook .nbmill-use[data-step="broken"]')
        use.locator(".nbmill-parameters").wait_for(timeout=60_000)
        assert "divisor" in use.inner_text() and "pipeline" in use.inner_text()
        shots(page, "8-parameters")
        editor = page.locator(".jp-NotebookPanel .jp-CodeCell").first.locator(".cm-content")
        editor.click()
        page.keyboard.press("Control+A")
        page.keyboard.type("denominator = 0")
        page.keyboard.press("Control+S")
        warning = page.locator(".nbmill-notebook .nbmill-warning")
        warning.wait_for(timeout=30_000)
        assert "divisor" in warning.inner_text()
        shots(page, "9-warning")
    finally:
        lab.stop()
