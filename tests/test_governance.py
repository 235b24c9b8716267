"""A real run's governance trail: ledger, notifications, verify, and secrets kept out of records."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import Receiver, load_run, nbmill, write_notebook

pytestmark = pytest.mark.slow
SECRET = "sk-live-7f3a9c1e5b2d4806"


@pytest.fixture(scope="module")
def governed(tmp_path_factory):
    project = tmp_path_factory.mktemp("governed")
    store = tmp_path_factory.mktemp("mlflow")
    write_notebook(
        project / "notebooks" / "make.ipynb",
        'rows = 3\nout = "x.csv"',
        "from pathlib import Path\nPath(out).write_text('a\\n' * rows)",
    )
    write_notebook(
        project / "notebooks" / "use.ipynb",
        'token = ""\nrows_file = "x.csv"\ndigest = "d.txt"',
        "import hashlib\nfrom pathlib import Path\nfrom nbmill import tracking",
        "Path(digest).write_text(hashlib.sha256(token.encode()).hexdigest())\n"
        "with tracking.mlflow_run():\n"
        "    tracking.log_metrics({'token_length': len(token)})",
    )
    (project / "pipelines").mkdir()
    (project / "pipelines" / "p.yml").write_text(
        yaml.safe_dump(
            {
                "name": "governed",
                "steps": {
                    "make": {"notebook": "notebooks/make.ipynb", "outputs": {"out": "data/x.csv"}},
                    "use": {
                        "notebook": "notebooks/use.ipynb",
                        "needs": ["make"],
                        "inputs": {"rows_file": "data/x.csv"},
                        "outputs": {"digest": "digest.txt"},
                    },
                },
            }
        )
    )
    (project / "params").mkdir()
    (project / "params" / "dev.yml").write_text(
        "steps:\n  use:\n    token: ${env:NBMILL_TEST_SECRET}\n"
    )
    (project / "nbmill.yml").write_text(
        "notify:\n  - name: team\n    type: webhook\n    url: ${env:NBMILL_TEST_HOOK_URL}\n"
    )
    receiver = Receiver(refuse=1)
    env = {
        "NBMILL_TEST_SECRET": SECRET,
        "NBMILL_TEST_HOOK_URL": receiver.url,
        "MLFLOW_TRACKING_URI": f"sqlite:///{store}/mlflow.db",
        "TF_BUILD": "True",
    }
    done = nbmill(
        "run",
        "pipelines/p.yml",
        "--params",
        "params/dev.yml",
        "--reason",
        "audit",
        cwd=project,
        env=env,
    )
    receiver.close()
    (run_dir,) = [p for p in (project / "runs").iterdir() if (p / "run.json").exists()]
    return {
        "done": done,
        "project": project,
        "run_dir": run_dir,
        "store": store,
        "env": env,
        "receiver": receiver,
    }


def test_the_run_completes_and_speaks_to_azure_devops(governed):
    done = governed["done"]
    assert done.returncode == 0, done.stderr
    assert "##vso[build.addbuildtag]nbmill-run-completed" in done.stdout
    assert f"]{governed['run_dir']}" in done.stdout  # artifact.upload of the record


def test_the_secret_reaches_the_notebook_but_no_archived_byte(governed):
    run_dir, store = governed["run_dir"], governed["store"]
    digest = (run_dir / "digest.txt").read_text()
    assert digest == hashlib.sha256(SECRET.encode()).hexdigest()
    for root in (governed["project"], store):
        for path in root.rglob("*"):
            if path.is_file():
                assert SECRET.encode() not in path.read_bytes(), path
    run = load_run(run_dir)
    assert run["steps"]["use"]["params"]["token"] == "${env:NBMILL_TEST_SECRET}"
    injected = (run_dir / "notebooks" / "use.ipynb").read_text()
    assert "environ[" in injected and "NBMILL_TEST_SECRET" in injected


def test_every_lifecycle_event_is_in_the_ledger_in_order(governed):
    project, run_dir = governed["project"], governed["run_dir"]
    done = nbmill("events", "--json", cwd=project)
    events = json.loads(done.stdout)
    assert [e["type"] for e in events] == [
        "nbmill.run.started",
        "nbmill.step.completed",
        "nbmill.step.completed",
        "nbmill.run.completed",
    ]
    final = events[-1]["data"]
    assert final["run_id"] == run_dir.name and final["who"] and final["why"] == "audit"
    assert final["files"] == load_run(run_dir)["files"]
    steps = json.loads(nbmill("events", "--type", "nbmill.step.*", "--json", cwd=project).stdout)
    assert [e["subject"] for e in steps] == [
        f"runs/{run_dir.name}/steps/make",
        f"runs/{run_dir.name}/steps/use",
    ]


def test_the_webhook_received_every_event_despite_a_refusal(governed):
    receiver = governed["receiver"]
    assert receiver.attempts == 5  # one refused, then four delivered
    assert [r["body"]["type"] for r in receiver.received][-1] == "nbmill.run.completed"
    assert not list((governed["project"] / "runs" / ".spool").rglob("*.json"))


def test_the_record_is_logged_beside_the_mlflow_run(governed):
    from mlflow.tracking import MlflowClient

    run_dir = governed["run_dir"]
    client = MlflowClient(tracking_uri=governed["env"]["MLFLOW_TRACKING_URI"])
    info = json.loads((run_dir / "mlflow.json").read_text())
    html = [a.path for a in client.list_artifacts(info["run_id"], "nbmill-record/html")]
    assert html == [  # each page, and what they share (their stylesheet and script)
        "nbmill-record/html/make.html",
        "nbmill-record/html/notebook.css",
        "nbmill-record/html/notebook.js",
        "nbmill-record/html/use.html",
    ]
    assert client.get_run(info["run_id"]).data.tags["nbmill.status"] == "completed"


def verify(governed) -> tuple[int, str]:
    done = nbmill("verify", cwd=governed["project"])
    return done.returncode, done.stdout + done.stderr


def tampered(path: Path, change) -> tuple[bytes, None]:
    original = path.read_bytes()
    path.write_bytes(change(original))
    return original


def test_verify_passes_on_an_untouched_record(governed):
    code, text = verify(governed)
    assert code == 0, text
    assert "4 entries, chain intact" in text and governed["run_dir"].name in text


def test_verify_names_an_archived_file_with_one_byte_changed(governed):
    path = governed["run_dir"] / "html" / "use.html"
    original = tampered(path, lambda b: b.replace(b"<html", b"<htmL", 1))
    try:
        code, text = verify(governed)
    finally:
        path.write_bytes(original)
    assert code == 4 and f"{path}: sha256 differs" in text


def test_verify_names_a_changed_run_json(governed):
    path = governed["run_dir"] / "run.json"
    original = tampered(path, lambda b: b.replace(b'"why": "audit"', b'"why": "other"'))
    try:
        code, text = verify(governed)
    finally:
        path.write_bytes(original)
    assert code == 4 and "run.json: differs from the ledger's entry" in text


@pytest.mark.parametrize("damage", ["delete", "reorder", "edit"])
def test_verify_names_the_first_damaged_ledger_entry(governed, damage):
    path = governed["project"] / "runs" / "ledger.jsonl"

    def change(data: bytes) -> bytes:
        lines = data.splitlines(keepends=True)
        if damage == "delete":
            del lines[1]
        elif damage == "reorder":
            lines[1], lines[2] = lines[2], lines[1]
        else:
            lines[1] = lines[1].replace(b'"who":"', b'"who":"x', 1)
        return b"".join(lines)

    original = tampered(path, change)
    try:
        code, text = verify(governed)
    finally:
        path.write_bytes(original)
    assert code == 4 and "ledger.jsonl: entry 2" in text
