"""The runner's own work around the notebooks: what it imports, and what its background thread
may and may not do."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from tests.conftest import load_run, nbmill, only_run, write_notebook

pytestmark = pytest.mark.slow


def one_step(project, *cells: str, parameters: str = "x = 1") -> None:
    write_notebook(project / "notebooks" / "only.ipynb", parameters, *cells)
    spec = {"name": "tiny", "steps": {"only": {"notebook": "notebooks/only.ipynb"}}}
    (project / "pipelines" / "tiny.yml").write_text(yaml.safe_dump(spec))


def test_a_pipeline_that_never_uses_mlflow_never_imports_it(project):
    one_step(project, "y = x + 1")
    script = (
        "import sys\n"
        "from nbmill.pipeline.runner import run\n"
        "record = run('pipelines/tiny.yml', runs_dir='runs')\n"
        "print(record.status, sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=project, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == ["completed", "[]"]


def test_a_page_that_cannot_be_rendered_is_recorded_on_its_step_and_the_run_stands(project):
    # The notebook blocks its own HTML page: a folder where the page would be written.
    one_step(
        project,
        "from pathlib import Path\n(Path(run_dir) / 'html' / 'only.html').mkdir(parents=True)",
        parameters="run_dir = ''",
    )
    done = nbmill("run", "pipelines/tiny.yml", cwd=project)
    assert done.returncode == 0, done.stderr
    run = load_run(only_run(project / "runs"))
    step = run["steps"]["only"]
    assert step["status"] == "completed" and "html" not in step
    assert step["html_error"].startswith(("IsADirectoryError", "OSError"))
    verified = nbmill("verify", cwd=project)
    assert verified.returncode == 0, verified.stderr
    assert json.loads((only_run(project / "runs") / "run.json").read_text()) == run
