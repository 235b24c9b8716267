"""The JupyterLab extension's REST API, on a real Jupyter Server started here on 127.0.0.1 with a
token: what the panels ask, answered by the library the command line uses, for this project
only, and only with Jupyter's own token."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import write_notebook
from tests.jupyter import Jupyter


def tiny_project(root: Path) -> Path:
    (root / "pipelines").mkdir(parents=True)
    write_notebook(root / "notebooks" / "first.ipynb", "x = 1\nrun_dir = ''", "y = x + 1")
    write_notebook(
        root / "notebooks" / "slow.ipynb",
        "seconds = 0.0",
        "import time\ntime.sleep(seconds)",
    )
    spec = {"name": "tiny", "steps": {
        "first": {"notebook": "notebooks/first.ipynb"},
        "slow": {"notebook": "notebooks/slow.ipynb", "needs": ["first"]},
    }}  # fmt: skip
    (root / "pipelines" / "tiny.yml").write_text(yaml.safe_dump(spec))
    (root / "params").mkdir()
    (root / "params" / "dev.yml").write_text(yaml.safe_dump({"steps": {"first": {"x": 2}}}))
    return root


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tiny_project(tmp_path_factory.mktemp("lab") / "project")
    server = Jupyter(root)
    yield server, root
    server.stop()


def wait_for(lab_server: Jupyter, job_id: str, until, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        _, state = lab_server.call("GET", f"/nbmill/api/jobs/{job_id}")
        if until(state):
            return state
        assert time.monotonic() < deadline, state
        time.sleep(0.1)


def test_nothing_answers_without_jupyters_token(lab):
    server, root = lab
    before = sorted((root / "runs").glob("2*"))
    for path in ("/nbmill/api/pipelines", "/nbmill/api/runs", "/nbmill/api/notebook?path=x"):
        code, _ = server.status("GET", path, token=False)
        assert code == 403, path
    code, _ = server.status("POST", "/nbmill/api/runs", {"pipeline": "pipelines/tiny.yml"},
                            token=False)  # fmt: skip
    assert code == 403
    time.sleep(1)  # a run it had started would have its folder by now
    assert sorted((root / "runs").glob("2*")) == before


def test_the_pipelines_panel_lists_each_pipeline_with_its_steps_and_the_params_files(lab):
    server, _ = lab
    _, found = server.call("GET", "/nbmill/api/pipelines")
    (tiny,) = found["pipelines"]
    assert tiny["name"] == "tiny" and tiny["problem"] is None
    assert [(s["name"], s["notebook"], s["needs"]) for s in tiny["steps"]] == [
        ("first", "notebooks/first.ipynb", []),
        ("slow", "notebooks/slow.ipynb", ["first"]),
    ]
    assert found["params"] == ["params/dev.yml"]


def test_a_run_started_from_lab_is_a_run_like_any_other(lab):
    server, root = lab
    code, job = server.call("POST", "/nbmill/api/runs", {
        "pipeline": "pipelines/tiny.yml", "params": "params/dev.yml",
        "overrides": ["slow.seconds=0.1"], "reason": "from lab", "force_all": True,
    })  # fmt: skip
    assert code == 202 and job["state"] == "running"
    done = wait_for(server, job["id"], lambda s: s["state"] != "running")
    assert done["state"] == "done", done["log"]
    run = done["run"]
    assert run["status"] == "completed" and run["why"] == "from lab"
    assert {name: step["status"] for name, step in run["steps"].items()} == {
        "first": "completed",
        "slow": "completed",
    }
    assert Path(done["run_dir"]).parent == root / "runs"
    _, rows = server.call("GET", "/nbmill/api/runs?limit=5")
    assert rows[0]["id"] == run["id"] and rows[0]["status"] == "completed"
    listed = subprocess.run([sys.executable, "-m", "nbmill", "runs", "--json"], cwd=root,
                            capture_output=True, text=True)  # fmt: skip
    assert json.loads(listed.stdout)[0]["id"] == run["id"]  # the same runs as the CLI's


def test_one_step_alone_takes_what_it_needs_from_the_cache(lab):
    server, _ = lab
    first = server.call("POST", "/nbmill/api/runs", {"pipeline": "pipelines/tiny.yml"})[1]
    assert wait_for(server, first["id"], lambda s: s["state"] != "running")["state"] == "done"
    _, job = server.call("POST", "/nbmill/api/runs", {
        "pipeline": "pipelines/tiny.yml", "only": ["first"], "force": ["first"],
    })  # fmt: skip
    done = wait_for(server, job["id"], lambda s: s["state"] != "running")
    assert done["state"] == "done", done["log"]
    steps = {name: step["status"] for name, step in done["run"]["steps"].items()}
    assert steps == {"first": "completed", "slow": "skipped"}
    _, job = server.call("POST", "/nbmill/api/runs", {
        "pipeline": "pipelines/tiny.yml", "only": ["slow"], "force": ["slow"],
    })  # fmt: skip
    done = wait_for(server, job["id"], lambda s: s["state"] != "running")
    steps = {name: step["status"] for name, step in done["run"]["steps"].items()}
    assert steps == {"first": "cached", "slow": "completed"}


def test_a_run_and_a_diff_against_the_previous_one_as_the_cli_prints_them(lab):
    server, root = lab
    for x, reason in ((3, "one"), (4, "two")):
        _, job = server.call("POST", "/nbmill/api/runs", {
            "pipeline": "pipelines/tiny.yml", "reason": reason, "overrides": [f"first.x={x}"],
        })  # fmt: skip
        wait_for(server, job["id"], lambda s: s["state"] != "running")
    _, rows = server.call("GET", "/nbmill/api/runs?limit=2")
    newer, older = rows[0]["id"], rows[1]["id"]
    _, run = server.call("GET", f"/nbmill/api/runs/{newer}")
    assert run["id"] == newer and run["why"] == "two"
    _, diff = server.call("GET", f"/nbmill/api/diff?a={older}&b={newer}")
    cli = subprocess.run([sys.executable, "-m", "nbmill", "diff", older, newer], cwd=root,
                         capture_output=True, text=True)  # fmt: skip
    assert diff["text"].strip() == cli.stdout.strip() and "first.x" in diff["text"]
    code, _ = server.status("GET", "/nbmill/api/runs/nope")
    assert code == 404


def start_slow_run(server: Jupyter, reason: str) -> tuple[dict, dict]:
    """A run whose step ``slow`` sleeps 120 s, from Lab: (the job, its state once slow runs)."""
    _, job = server.call("POST", "/nbmill/api/runs", {
        "pipeline": "pipelines/tiny.yml", "overrides": ["slow.seconds=120"], "force_all": True,
        "reason": reason,
    })  # fmt: skip
    running = wait_for(
        server, job["id"],
        lambda s: s["run"] and (s["run"]["steps"].get("slow") or {}).get("status") == "running",
    )  # fmt: skip
    return job, running


def test_cancelling_a_run_records_it_as_interrupted(lab):
    server, _ = lab
    job, running = start_slow_run(server, "to cancel")
    assert running["state"] == "running"
    code, _ = server.call("DELETE", f"/nbmill/api/jobs/{job['id']}")
    assert code == 202
    ended = wait_for(server, job["id"], lambda s: s["state"] != "running", timeout=60)
    assert ended["cancelled"] and ended["exit_code"] == 143
    assert ended["run"]["status"] == "interrupted"


def test_a_run_still_going_when_the_server_stops_is_recorded_as_interrupted(tmp_path):
    root = tiny_project(tmp_path / "project")
    server = Jupyter(root)
    try:
        _, running = start_slow_run(server, "the server stops")
    finally:
        server.stop()  # SIGTERM, as Ctrl-C or a service manager stops it
    assert server.process.returncode is not None
    run = json.loads((Path(running["run_dir"]) / "run.json").read_text())
    assert run["status"] == "interrupted"
    stat = Path(f"/proc/{run['runner']['pid']}/stat")  # the runner has exited
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_editing_a_notebook_shows_the_steps_that_use_it_and_their_parameters(lab):
    server, _ = lab
    _, found = server.call("GET", "/nbmill/api/notebook?path=notebooks/first.ipynb")
    (use,) = found["uses"]
    assert (use["pipeline"], use["step"], use["problem"]) == ("pipelines/tiny.yml", "first", None)
    assert use["parameters"]["x"] == {"value": 1, "from": "notebook", "type": "int"}
    assert use["parameters"]["run_dir"]["from"] == "run folder"


def test_a_parameters_cell_that_no_longer_matches_is_named_before_anything_runs(tmp_path):
    root = tiny_project(tmp_path / "project")
    spec = yaml.safe_load((root / "pipelines" / "tiny.yml").read_text())
    spec["steps"]["first"]["params"] = {"x": 5}
    (root / "pipelines" / "tiny.yml").write_text(yaml.safe_dump(spec))
    write_notebook(root / "notebooks" / "first.ipynb", "renamed = 1\nrun_dir = ''", "pass")
    server = Jupyter(root)
    try:
        _, found = server.call("GET", "/nbmill/api/notebook?path=notebooks/first.ipynb")
    finally:
        server.stop()
    (use,) = found["uses"]
    assert use["parameters"] is None and "'x'" in use["problem"] and "first" in use["problem"]
    assert not (root / "runs").exists() or not any((root / "runs").glob("2*"))


def test_paths_outside_the_project_are_refused(lab):
    server, root = lab
    outside = root.parent / "elsewhere.yml"
    outside.write_text("name: x\nsteps: {}\n")
    for body in ({"pipeline": "../elsewhere.yml"}, {"pipeline": str(outside)},
                 {"pipeline": "pipelines/tiny.yml", "params": "../../etc/passwd"}):  # fmt: skip
        code, answer = server.status("POST", "/nbmill/api/runs", body)
        assert code == 403 and "outside the project" in answer["error"], body
    code, _ = server.status("GET", "/nbmill/api/notebook?path=../../etc/passwd")
    assert code == 403
    code, answer = server.status("POST", "/nbmill/api/runs", {"params": "params/dev.yml"})
    assert code == 400 and "'pipeline' is required" in answer["error"]


def test_the_runs_panel_lists_the_newest_first_and_sees_a_run_change(tmp_path):
    from nbmill.lab.project import Runs
    from tests.conftest import run_fields

    for n, status in enumerate(("completed", "failed", "running")):
        folder = tmp_path / "runs" / f"2026120{n}T000000000Z-00000{n}"
        folder.mkdir(parents=True)
        data = {**run_fields(), "id": folder.name, "status": status}
        (folder / "run.json").write_text(json.dumps(data))
    runs = Runs(tmp_path / "runs", None)
    assert [row["id"][:9] for row in runs.rows()] == ["20261202T", "20261201T", "20261200T"]
    assert [row["status"] for row in runs.rows(limit=2)] == ["running", "failed"]
    newest = tmp_path / "runs" / "20261202T000000000Z-000002" / "run.json"
    newest.write_text(json.dumps({**json.loads(newest.read_text()), "status": "completed",
                                  "why": "changed afterwards"}))  # fmt: skip
    assert runs.rows(limit=1)[0]["status"] == "completed"
    assert runs.rows(limit=1)[0]["why"] == "changed afterwards"
