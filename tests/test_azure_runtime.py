"""The training pipeline as Azure ML would run it: the job file ``--dry-run`` writes, run step by
step by the job runtime emulated in ``tests/azureml_runtime.py`` (the uploaded snapshot, the
job's own environment, bash, bindings, Azure ML's variables, ready steps in the most adversarial
order), tracking to MLflow as Azure ML serves it (``tests/azureml_mlflow.py``: a real MLflow
server that refuses what Azure ML's tracking service does not implement), then downloaded and
assembled as ``nbmill run --on azureml`` does after a cloud run. The assembled record is a
record like a local run's: ``verify``, ``show`` and ``lineage`` read it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, nbmill

pytest.importorskip("azure.ai.ml", reason="the azure dependency group is not installed")

from nbmill.governance.ledger import Ledger  # noqa: E402
from nbmill.pipeline.assemble import assemble, run_why  # noqa: E402
from nbmill.pipeline.runner import plan  # noqa: E402
from tests import azureml_runtime  # noqa: E402
from tests.azureml_mlflow import AzureMLflow  # noqa: E402

pytestmark = pytest.mark.slow
REASON = "cloud run test"


@pytest.fixture(scope="module")
def workspace_mlflow(tmp_path_factory):
    server = AzureMLflow(tmp_path_factory.mktemp("workspace-mlflow"))
    yield server
    server.close()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory, workspace_mlflow):
    base = tmp_path_factory.mktemp("azureml")
    env = {"MLFLOW_TRACKING_URI": workspace_mlflow.uri, "NBMILL_RUNS_DIR": str(base / "runs")}
    out = base / "submitted"
    before = len(workspace_mlflow.refused)  # another test of this module may have run first
    done = nbmill(
        "run", "pipelines/training.yml", "--on", "azureml", "--dry-run", "--out", str(out),
        "--reason", REASON, cwd=ROOT, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    job_file = out / "job.yml"
    document = yaml.safe_load(job_file.read_text())
    (code,) = {node["component"]["code"] for node in document["jobs"].values()}
    project = (job_file.parent / code).resolve()
    snapshot = azureml_runtime.snapshot(project, base / "code")
    uploaded = sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*"))
    (conda,) = {
        json.dumps(node["component"]["environment"]["conda_file"], sort_keys=True)
        for node in document["jobs"].values()
    }
    env_dir = azureml_runtime.environment(json.loads(conda), base / "env")
    job = azureml_runtime.run_job(job_file, snapshot, env_dir, base, env["MLFLOW_TRACKING_URI"])
    planned = plan(ROOT / "pipelines" / "training.yml", None, (), base / "runs")
    record = assemble(
        planned,
        document["tags"]["nbmill.run_id"],
        run_why(planned, REASON),
        job.outputs,
        job.statuses,
        ended=job.status,
        job="emulated",
    )
    return {"base": base, "env": env, "document": document, "job": job, "record": record,
            "uploaded": uploaded, "project": project,
            "refused": workspace_mlflow.refused[before:]}  # fmt: skip


def test_the_job_file_names_the_project_relative_to_itself(cloud):
    codes = {node["component"]["code"] for node in cloud["document"]["jobs"].values()}
    assert all(not Path(code).is_absolute() for code in codes)
    assert cloud["project"] == ROOT


def test_the_snapshot_leaves_out_what_git_ignores(cloud):
    uploaded = cloud["uploaded"]
    assert "notebooks/train.ipynb" in uploaded and "src/nbmill/__init__.py" in uploaded
    for ignored in (".venv", ".git", "runs", "mlflow.db", ".tools", "mlruns", ".pytest_cache"):
        assert not [p for p in uploaded if p == ignored or p.startswith(f"{ignored}/")], ignored
    assert not [p for p in uploaded if "__pycache__" in p]


def test_amlignore_repeats_every_gitignore_line():
    """azure-ai-ml reads .amlignore instead of .gitignore, never both."""

    def lines(name: str) -> set[str]:
        text = (ROOT / name).read_text().splitlines()
        return {line.strip() for line in text if line.strip() and not line.startswith("#")}

    assert lines(".gitignore") <= lines(".amlignore")


def test_every_step_ran_after_what_it_needs_even_when_ready_steps_go_latest_first(cloud):
    job = cloud["job"]
    assert job.status == "Completed", {k: v[-3000:] for k, v in job.logs.items()}
    assert job.order == ["prep", "train", "evaluate", "deploy"]
    deploy = cloud["document"]["jobs"]["deploy"]["inputs"]
    assert set(deploy) == {"prep", "train", "evaluate"}  # evaluate: a `needs:`, no files


def test_nothing_asked_of_mlflow_is_what_azure_ml_does_not_implement(cloud):
    """No logged models, no MLflow aliases, no registered-model tags, no search by tag."""
    assert cloud["job"].status == "Completed"
    assert cloud["refused"] == []


def test_each_step_logged_to_the_mlflow_run_azure_ml_gave_its_job(cloud):
    from mlflow.tracking import MlflowClient

    job = cloud["job"]
    store = MlflowClient(cloud["env"]["MLFLOW_TRACKING_URI"])
    train = store.get_run(job.mlflow_runs["train"])
    assert train.data.tags["nbmill.run_id"] == cloud["record"].id
    assert train.data.tags["nbmill.step.train"] == "ran"
    assert train.data.metrics  # the step's metrics went to its job's own run
    experiments = {e.name for e in store.search_experiments()}
    assert "scratch" not in experiments


def test_the_assembled_cloud_run_is_a_record_that_verifies(cloud):
    record = cloud["record"]
    assert record.status == "completed", record.data.get("error")
    assert record.data["why"] == REASON
    assert [record.step(n).status for n in ("prep", "train", "evaluate", "deploy")] == [
        "completed"
    ] * 4
    assert record.data["metrics"]["evaluate.test_rmse"] > 0
    assert record.step("deploy").inputs  # the hashes of what it read
    for name in ("prep", "train", "evaluate", "deploy"):
        assert (record.dir / "html" / f"{name}.html").is_file()
    assert not (record.dir / ".nbmill").exists()
    done = nbmill("verify", str(record.dir), cwd=ROOT, env=cloud["env"])
    assert done.returncode == 0, done.stdout + done.stderr
    shown = nbmill("show", record.id, "--json", cwd=ROOT, env=cloud["env"])
    assert json.loads(shown.stdout)["id"] == record.id


def test_the_steps_events_are_in_the_projects_ledger_with_the_runs_reason(cloud):
    ledger = Ledger(Path(cloud["env"]["NBMILL_RUNS_DIR"]) / "ledger.jsonl")
    events = ledger.events()
    types = [e["type"] for e in events]
    assert types[0] == "nbmill.run.started" and types[-1] == "nbmill.run.completed"
    assert "nbmill.model.registered" in types
    gates = [e for e in events if e["type"] == "nbmill.model.promoted"]
    assert gates and all(e["data"].get("why") == REASON for e in gates)
    done = nbmill("verify", cwd=ROOT, env=cloud["env"])  # the ledger and every run
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_cloud_runs_lineage_reaches_its_data_and_commit(cloud):
    record = cloud["record"]
    done = nbmill("lineage", record.id, "--json", cwd=ROOT, env=cloud["env"])
    assert done.returncode == 0, done.stdout + done.stderr
    links = json.loads(done.stdout)["links"]
    kinds = [link["kind"] for link in links]
    assert kinds[0] == "run" and kinds.count("notebook") == 4 and "commit" in kinds
    data = {link["label"]: link for link in links if link["kind"] == "data"}
    assert data["data/train.csv"]["sha256"] == record.data["files"]["data/train.csv"]
    assert all(link["ok"] for link in links if link["kind"] in ("notebook", "data"))


def test_a_step_that_fails_on_azure_fails_the_assembled_record(cloud, tmp_path):
    """The same downloads, with evaluate's job reported Failed: the record says so, and the
    steps after it are skipped."""
    job = cloud["job"]
    planned = plan(ROOT / "pipelines" / "training.yml", None, (), tmp_path / "runs")
    statuses = {**job.statuses, "evaluate": "Failed"}
    outputs = {k: v for k, v in job.outputs.items() if k != "deploy"}
    record = assemble(planned, "20261203T000000000Z-failed", REASON, outputs, statuses,
                      ended="Failed", job="emulated")  # fmt: skip
    assert record.status == "failed"
    assert record.step("evaluate").status == "failed"
    assert "ended Failed" in record.data["error"]["message"]
    assert record.step("deploy").status == "skipped"
    assert (record.dir / "notebooks" / "evaluate.ipynb").is_file()  # kept, to see where


def test_the_registry_reads_back_through_mlflow_as_azure_ml_serves_it(cloud, workspace_mlflow):
    before = len(workspace_mlflow.refused)
    done = nbmill("models", "list", "diabetes-ridge", "--json", cwd=ROOT, env=cloud["env"])
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)
    assert row["version"] == "1" and row["aliases"] == ["production", "staging"]
    assert row["run_id"] == cloud["record"].id
    assert workspace_mlflow.refused[before:] == []


def test_mlflow_3s_logged_models_are_refused_as_azure_ml_refuses_them(workspace_mlflow):
    """What the train step did before: ``log_model`` creates an MLflow 3 logged model, which
    Azure ML's tracking service answers with 404. (In a child process: MLflow's tracking URI
    is process-wide, and kernels started later would inherit it.)"""
    script = (
        "import mlflow, mlflow.sklearn\n"
        "from sklearn.linear_model import LinearRegression\n"
        "with mlflow.start_run():\n"
        "    mlflow.sklearn.log_model(LinearRegression().fit([[0], [1]], [0, 1]), name='model')\n"
    )
    before = len(workspace_mlflow.refused)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
        env={**os.environ, "MLFLOW_TRACKING_URI": workspace_mlflow.uri},
    )  # fmt: skip
    assert done.returncode != 0
    assert "404" in done.stderr or "not implemented" in done.stderr
    assert any("logged models" in line for line in workspace_mlflow.refused[before:])


def test_the_schedule_registers_the_data_the_model_was_trained_on(cloud, tmp_path):
    """The reference data of monitoring: the run's training file, found by the sha256 the model
    version records, registered as diabetes-ridge-training at the model's version."""
    done = nbmill(
        "monitor-schedule", "diabetes-ridge@production", "--endpoint", "diabetes",
        "--params", "params/prod.yml", "--dry-run", "--out", str(tmp_path),
        cwd=ROOT, env=cloud["env"],
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    data = yaml.safe_load((tmp_path / "data.yml").read_text())
    assert (data["name"], str(data["version"]), data["type"]) == (
        "diabetes-ridge-training",
        "1",
        "mltable",
    )
    record = cloud["record"]
    assert data["tags"]["nbmill.data_sha256"] == record.data["files"]["data/train.csv"]
    assert (tmp_path / "training-data" / "MLTable").is_file()
    schedule = yaml.safe_load((tmp_path / "schedule.yml").read_text())
    (path,) = {
        s["reference_data"]["input_data"]["path"]
        for s in schedule["create_monitor"]["monitoring_signals"].values()
    }
    assert path == "azureml:diabetes-ridge-training:1"


def test_a_training_file_that_is_not_the_models_is_refused(cloud, tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("age,target\n1,2\n")
    done = nbmill(
        "monitor-schedule", "diabetes-ridge@production", "--endpoint", "diabetes",
        "--training-data", str(other), "--dry-run", "--out", str(tmp_path / "out"),
        cwd=ROOT, env=cloud["env"],
    )  # fmt: skip
    assert done.returncode != 0
    assert "is not the data diabetes-ridge version 1 was trained on" in done.stderr


def test_without_the_run_folder_the_training_data_comes_from_the_models_mlflow_run(cloud, tmp_path):
    """On an agent that never saw the training run (a deploy stage), the data the model was
    trained on is the copy logged with its MLflow run, checked by the sha256 the version
    records."""
    env = {**cloud["env"], "NBMILL_RUNS_DIR": str(tmp_path / "no-runs-here")}
    done = nbmill(
        "monitor-schedule", "diabetes-ridge/1", "--endpoint", "diabetes",
        "--params", "params/prod.yml", "--dry-run", "--out", str(tmp_path / "out"),
        cwd=ROOT, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    data = yaml.safe_load((tmp_path / "out" / "data.yml").read_text())
    assert data["tags"]["nbmill.data_sha256"] == cloud["record"].data["files"]["data/train.csv"]
    assert (tmp_path / "out" / "training-data" / "train.csv").is_file()
