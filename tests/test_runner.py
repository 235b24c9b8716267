"""The runner's own work around the notebooks: what it imports, and what its background thread
may and may not do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nbmill._hashing import sha256_file
from tests.conftest import load_run, nbmill, only_run, write_notebook

pytestmark = pytest.mark.slow


def blocked(project, path: str) -> None:
    """One step whose notebook makes a folder where the record wants a file (``path``, in
    the run folder)."""
    one_step(
        project,
        f"from pathlib import Path\n(Path(run_dir) / {path!r}).mkdir(parents=True)",
        parameters="run_dir = ''",
    )


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
    blocked(project, "html/only.html")
    done = nbmill("run", "pipelines/tiny.yml", cwd=project)
    assert done.returncode == 0, done.stderr
    run = load_run(only_run(project / "runs"))
    step = run["steps"]["only"]
    assert step["status"] == "completed" and "html" not in step
    assert step["html_error"].startswith(("IsADirectoryError", "OSError"))
    verified = nbmill("verify", cwd=project)
    assert verified.returncode == 0, verified.stderr
    assert json.loads((only_run(project / "runs") / "run.json").read_text()) == run


def forkservers_of_this_process() -> list[int]:
    """The fork-server templates this process started that are still alive (not zombies)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
            cmdline = (status.parent / "cmdline").read_bytes()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)
        if (
            fields.get("PPid", "").strip() == str(os.getpid())
            and b"nbmill.pipeline.forkserver" in cmdline
            and not fields.get("State", "").startswith("Z")
        ):
            found.append(int(status.parent.name))
    return found


def test_a_run_page_that_cannot_be_written_still_ends_the_run_with_a_status_and_an_event(project):
    blocked(project, "index.html")
    done = nbmill("run", "pipelines/tiny.yml", cwd=project)
    assert done.returncode == 1
    assert "the run page could not be written: IsADirectoryError" in done.stderr
    assert "Traceback" not in done.stderr
    run_dir = only_run(project / "runs")
    run = load_run(run_dir)
    assert run["status"] == "failed" and run["steps"]["only"]["status"] == "completed"
    assert run["error"]["step"] == "(runner)" and run["error"]["type"] == "RecordError"
    assert run["files"]  # sealed all the same
    lines = (project / "runs" / "ledger.jsonl").read_text().splitlines()
    events = [json.loads(line)["event"] for line in lines]
    final = [e for e in events if e["type"] == "nbmill.run.failed"]
    assert len(final) == 1 and final[0]["data"]["run_id"] == run["id"]
    assert final[0]["data"]["run_json_sha256"] == sha256_file(run_dir / "run.json")


def test_a_first_event_that_cannot_be_written_leaves_no_template_running(project):
    from nbmill.errors import NbmillError
    from nbmill.pipeline.runner import run

    one_step(project, "y = x + 1")
    (project / "runs").mkdir()
    (project / "runs" / "ledger.jsonl").mkdir()  # the ledger cannot be appended to
    before = forkservers_of_this_process()
    with pytest.raises((NbmillError, OSError)):
        run(project / "pipelines" / "tiny.yml", project_dir=project)
    assert forkservers_of_this_process() == before
    record = json.loads((only_run(project / "runs") / "run.json").read_text())
    assert record["status"] == "failed" and record["files"]  # ended, and sealed


def test_a_notifier_the_caller_passed_in_is_the_caller_s_to_close(project):
    from nbmill.governance.events import Notifier
    from nbmill.pipeline.runner import run
    from nbmill.project.config import load_config

    class Watched(Notifier):
        closed = 0

        def close(self, timeout: float = 15.0) -> None:
            self.closed += 1
            super().close(timeout)

    one_step(project, "y = x + 1")
    notifier = Watched(load_config(project))
    record = run(project / "pipelines" / "tiny.yml", project_dir=project, notifier=notifier)
    assert record.status == "completed" and notifier.closed == 0


def test_the_live_progress_line_stops_its_thread_when_no_step_runs():
    import io
    import threading
    import time

    from nbmill.pipeline.progress import ConsoleProgress

    progress = ConsoleProgress(io.StringIO(), live=True)
    progress.step_started(1, 1, "only")
    time.sleep(0.3)
    ticker = progress._ticker
    assert ticker is not None and ticker.is_alive()
    progress.step_finished(1, 1, "only", "completed", 0.3)
    ticker.join(timeout=2)
    assert not ticker.is_alive()
    assert not [t for t in threading.enumerate() if t is ticker]
