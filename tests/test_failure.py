"""A step that fails stops the run, and the failure is archived, never shown as a success."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
import yaml

from nbmill._hashing import sha256_file
from tests.conftest import load_run, nbmill, only_run, write_notebook

pytestmark = pytest.mark.slow


def pipeline(project: Path, steps: dict) -> str:
    path = project / "pipelines" / "p.yml"
    path.write_text(yaml.safe_dump({"name": "failing", "steps": steps}))
    return str(path)


@pytest.fixture(scope="module")
def failing(tmp_path_factory):
    project = tmp_path_factory.mktemp("failing")
    (project / "pipelines").mkdir()
    write_notebook(
        project / "notebooks" / "ok.ipynb",
        'out = "x"',
        "from pathlib import Path\nPath(out).write_text('fine')",
    )
    write_notebook(
        project / "notebooks" / "boom.ipynb",
        'data = "x"',
        "from nbmill import tracking\nrun = tracking.mlflow_run()",
        "print('before the error')",
        "raise ValueError('deliberate failure for the test')",
        "print('never reached')",
    )
    write_notebook(project / "notebooks" / "after.ipynb", "x = 1", "print('after')")
    spec = pipeline(
        project,
        {
            "ok": {"notebook": "notebooks/ok.ipynb", "outputs": {"out": "ok.txt"}},
            "boom": {
                "notebook": "notebooks/boom.ipynb",
                "needs": ["ok"],
                "inputs": {"data": "ok.txt"},
            },
            "after": {"notebook": "notebooks/after.ipynb", "needs": ["boom"]},
        },
    )
    done = nbmill("run", spec, "--reason", "failure test", cwd=project)
    run_dir = only_run(project / "runs")
    return done, run_dir


def test_the_command_fails_naming_the_step_and_the_error(failing):
    done, run_dir = failing
    assert done.returncode == 1
    assert "failed at step 'boom': ValueError: deliberate failure for the test" in done.stderr
    assert str(run_dir) in done.stderr
    assert "completed" not in done.stdout


def test_run_json_records_the_failed_step_and_skips_the_rest(failing):
    _, run_dir = failing
    run = load_run(run_dir)
    assert run["status"] == "failed"
    assert run["error"]["step"] == "boom" and run["error"]["type"] == "ValueError"
    assert [run["steps"][s]["status"] for s in ("ok", "boom", "after")] == [
        "completed",
        "failed",
        "skipped",
    ]
    assert run["steps"]["boom"]["error"]["message"] == "deliberate failure for the test"
    assert run["ended_at"] is not None


def test_the_partial_notebook_is_archived_with_the_error_visible(failing):
    _, run_dir = failing
    nb = nbformat.read(run_dir / "notebooks" / "boom.ipynb", as_version=4)
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    assert any(o.get("ename") == "ValueError" for o in outputs)
    assert any("before the error" in o.get("text", "") for o in outputs)
    assert not any("never reached" in o.get("text", "") for o in outputs)
    assert "papermill-error-cell-tag" in nbformat.writes(nb)  # papermill's marker at the top
    assert "deliberate failure for the test" in (run_dir / "html" / "boom.html").read_text()
    assert not (run_dir / "notebooks" / "after.ipynb").exists()


def test_the_failed_record_is_hashed_like_a_good_one(failing):
    _, run_dir = failing
    files = load_run(run_dir)["files"]
    assert "notebooks/boom.ipynb" in files
    assert all(sha256_file(run_dir / rel) == digest for rel, digest in files.items())


def test_the_mlflow_run_is_marked_failed(failing):
    from mlflow.tracking import MlflowClient

    _, run_dir = failing
    client = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.`nbmill.run_id` = '{run_dir.name}'",
    )
    assert [r.info.status for r in runs] == ["FAILED"]
    assert runs[0].data.tags["nbmill.status"] == "failed"


def test_a_declared_output_the_notebook_did_not_write_fails_the_step(project):
    write_notebook(project / "notebooks" / "lazy.ipynb", 'result = "x"', "print('no file')")
    spec = pipeline(
        project, {"lazy": {"notebook": "notebooks/lazy.ipynb", "outputs": {"result": "result.csv"}}}
    )
    done = nbmill("run", spec, cwd=project)
    assert done.returncode == 1
    assert "MissingOutput" in done.stderr and "result.csv" in done.stderr
    run_dir = only_run(project / "runs")
    assert load_run(run_dir)["steps"]["lazy"]["status"] == "failed"


def test_bad_parameters_fail_before_any_notebook_runs(project):
    write_notebook(
        project / "notebooks" / "a.ipynb", "alpha = 1.0", "open('ran.txt', 'w').write('ran')"
    )
    spec = pipeline(project, {"a": {"notebook": "notebooks/a.ipynb"}})
    done = nbmill("run", spec, "-p", "a.alpah=2", cwd=project)
    assert done.returncode == 1
    assert "error: -p a.alpah: step 'a': unknown parameter 'alpah'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (project / "runs").exists()
    assert not (project / "notebooks" / "ran.txt").exists()
