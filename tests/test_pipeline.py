"""The default training pipeline, end to end: real kernels, real files, a real MLflow store."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import nbformat
import pytest

from nbmill._hashing import sha256_file
from tests.conftest import ROOT, load_run, nbmill

pytestmark = pytest.mark.slow
STEPS = ["prep", "train", "evaluate", "deploy"]


@pytest.fixture(scope="module")
def e2e_store(tmp_path_factory) -> str:
    """The run's own MLflow store: its model is the first of its name, so the gate promotes it."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


@pytest.fixture(scope="module")
def finished(tmp_path_factory, e2e_store) -> tuple[subprocess.CompletedProcess, Path]:
    runs = tmp_path_factory.mktemp("runs")
    done = nbmill(
        "run",
        "pipelines/training.yml",
        "--params",
        "params/dev.yml",
        "--reason",
        "end-to-end test",
        "--runs-dir",
        str(runs),
        cwd=ROOT,
        env={"MLFLOW_TRACKING_URI": e2e_store},
    )
    folders = sorted(p for p in runs.iterdir() if (p / "run.json").exists())
    assert len(folders) == 1, done.stderr
    return done, folders[0]


def test_the_run_succeeds_and_says_where_the_report_is(finished):
    done, run_dir = finished
    assert done.returncode == 0, done.stderr
    assert f"record: {run_dir}" in done.stdout
    assert f"report: {run_dir}/index.html" in done.stdout
    assert "[4/4] deploy  completed" in done.stderr  # plain progress lines when not a terminal


def test_every_step_leaves_an_executed_notebook_and_its_html(finished):
    _, run_dir = finished
    for step in STEPS:
        nb = nbformat.read(run_dir / "notebooks" / f"{step}.ipynb", as_version=4)
        errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
        assert errors == [], step
        injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert len(injected) == 1 and str(run_dir) in injected[0].source, step
        html = (run_dir / "html" / f"{step}.html").read_text()
        assert "<html" in html and "parameters" in html, step
    assert "data:image/png;base64" in (run_dir / "html" / "evaluate.html").read_text()
    index = (run_dir / "index.html").read_text()
    for step in STEPS:
        assert f'href="html/{step}.html"' in index
    assert "evaluate.test_r2" in index and "end-to-end test" in index


def test_run_json_says_what_ran_with_which_values_by_whom_and_why(finished):
    _, run_dir = finished
    run = load_run(run_dir)
    assert run["id"] == run_dir.name and run["status"] == "completed" and run["error"] is None
    assert run["pipeline"]["name"] == "training"
    assert run["pipeline"]["sha256"] == sha256_file(ROOT / "pipelines" / "training.yml")
    assert run["params_file"]["file"] == "params/dev.yml"
    assert run["why"] == "end-to-end test" and run["who"]
    assert list(run["steps"]) == STEPS
    assert run["steps"]["prep"]["params"] == {"seed": 42, "test_size": 0.2}
    assert run["steps"]["train"]["params"] == {"alpha": 1.0, "model_name": "diabetes-ridge"}
    assert run["steps"]["evaluate"]["params"] == {
        "model_name": "diabetes-ridge",
        "metric": "r2",
        "greater_is_better": True,
        "min_improvement": 0.0,
    }
    assert run["steps"]["deploy"]["params"] == {"target": "local", "model_name": "diabetes-ridge"}
    for step in STEPS:
        entry = run["steps"][step]
        assert entry["status"] == "completed", step
        assert entry["started_at"] <= entry["ended_at"] and entry["duration_s"] > 0
    assert run["started_at"] <= run["steps"]["prep"]["started_at"]
    assert run["python"] and run["host"]


def test_git_commit_is_the_checkout_head(finished):
    _, run_dir = finished
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    assert load_run(run_dir)["git"]["commit"] == (head or None)


def test_every_hash_in_run_json_matches_the_file(finished):
    _, run_dir = finished
    run = load_run(run_dir)
    files = run["files"]
    assert {
        "notebooks/train.ipynb",
        "html/train.html",
        "data/train.csv",
        "model/MLmodel",
        "eval/predicted_vs_actual.png",
        "package/package.json",
        "environment.txt",
    } <= set(files)
    on_disk = {
        p.relative_to(run_dir).as_posix()
        for p in run_dir.rglob("*")
        if p.is_file() and p.name != "run.json"
    }
    assert set(files) == on_disk
    for rel, digest in files.items():
        assert sha256_file(run_dir / rel) == digest, rel
    for step in STEPS:
        for rel, digest in {
            **run["steps"][step].get("inputs", {}),
            **run["steps"][step]["outputs"],
        }.items():
            assert files[rel] == digest, (step, rel)
    assert (
        run["steps"]["train"]["inputs"]["data/train.csv"]
        == run["steps"]["prep"]["outputs"]["data/train.csv"]
    )


def test_the_environment_is_recorded_whole_and_fingerprinted_by_what_the_run_needs(finished):
    from nbmill.project.environment import requirements_of
    from nbmill.records.provenance import run_distributions

    _, run_dir = finished
    env = load_run(run_dir)["environment"]
    lines = (run_dir / "environment.txt").read_text().splitlines()
    assert any(line.startswith("pytest==") for line in lines)  # make test installed it
    assert env["installed"] == hashlib.sha256("\n".join(lines).encode()).hexdigest()
    needed = run_distributions(requirements_of(ROOT))
    names = {line.split("==")[0] for line in needed}
    assert {"papermill", "mlflow-skinny", "scikit-learn", "matplotlib"} <= names
    assert not names & {"pytest", "ruff", "nbval", "pytest-randomly"}
    assert set(needed) <= set(lines) and env["packages"] == len(needed)
    assert env["fingerprint"] == hashlib.sha256("\n".join(needed).encode()).hexdigest()


def test_metrics_are_recorded_and_plausible(finished):
    _, run_dir = finished
    metrics = load_run(run_dir)["metrics"]
    assert metrics["prep.rows_train"] + metrics["prep.rows_test"] == 442
    assert metrics["evaluate.test_r2"] > 0.3
    assert 0 < metrics["evaluate.test_rmse"] < 100
    assert metrics["deploy.smoke_max_abs_diff"] <= 1e-9


def test_the_mlflow_run_is_tagged_with_the_run_id_and_has_the_model(finished, e2e_store):
    import mlflow.artifacts
    import mlflow.pyfunc
    from mlflow import MlflowClient

    _, run_dir = finished
    client = MlflowClient(tracking_uri=e2e_store)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, filter_string=f"tags.`nbmill.run_id` = '{run_dir.name}'")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.metrics["evaluate.test_r2"] == load_run(run_dir)["metrics"]["evaluate.test_r2"]
    assert run.data.params["alpha"] == "1.0"
    # The model's files are plain artifacts of the run (no MLflow 3 logged model: Azure ML's
    # tracking service does not implement them), registered from runs:/<run>/model.
    assert client.search_logged_models(experiment_ids=[run.info.experiment_id]) == []
    (version,) = client.search_model_versions("name='diabetes-ridge'")
    assert version.source.endswith("/model") and version.run_id == run.info.run_id
    local = mlflow.artifacts.download_artifacts(
        f"runs:/{run.info.run_id}/model", tracking_uri=e2e_store
    )
    loaded = mlflow.pyfunc.load_model(local)
    assert loaded.metadata.signature is not None
    assert json.loads((run_dir / "mlflow.json").read_text())["run_id"] == run.info.run_id


def test_review_commands_read_the_run(finished):
    _, run_dir = finished
    runs_dir = str(run_dir.parent)
    rows = json.loads(nbmill("runs", "--runs-dir", runs_dir, "--json", cwd=ROOT).stdout)
    assert [r["id"] for r in rows] == [run_dir.name]
    assert rows[0]["evaluate.test_r2"] == load_run(run_dir)["metrics"]["evaluate.test_r2"]
    shown = nbmill("show", "latest", "--runs-dir", runs_dir, cwd=ROOT)
    assert (
        shown.returncode == 0 and run_dir.name in shown.stdout and "end-to-end test" in shown.stdout
    )
    same = json.loads(
        nbmill("diff", run_dir.name, "latest", "--runs-dir", runs_dir, "--json", cwd=ROOT).stdout
    )
    assert same["params"] == {} and same["data"] == {} and same["environment"]["same"]


def test_verify_and_report_cover_the_run(finished):
    _, run_dir = finished
    runs_dir = str(run_dir.parent)
    verified = nbmill("verify", "--runs-dir", runs_dir, cwd=ROOT)
    assert verified.returncode == 0, verified.stderr
    assert f"run {run_dir.name}: " in verified.stdout
    report = nbmill("report", "--runs-dir", runs_dir, cwd=ROOT)
    assert report.returncode == 0
    index = (run_dir.parent / "index.html").read_text()
    assert f'href="{run_dir.name}/index.html"' in index
    assert "nbmill.run.completed" in (run_dir.parent / "ledger.html").read_text()


def test_the_first_model_is_registered_promoted_and_deployed_locally(finished):
    _, run_dir = finished
    run = load_run(run_dir)
    assert run["metrics"]["train.model_version"] == 1
    assert run["metrics"]["evaluate.promoted"] == 1 and run["metrics"]["deploy.deployed"] == 1
    assert run["metrics"]["deploy.smoke_max_abs_diff"] <= 1e-9
    deployment = json.loads((run_dir.parent / "deployments" / "local.json").read_text())
    assert deployment["version"] == "1" and deployment["run_id"] == run_dir.name
    package = json.loads((run_dir / "package" / "package.json").read_text())
    assert deployment["model_sha256"] == package["model_sha256"]
    events = json.loads(
        nbmill(
            "events",
            "--runs-dir",
            str(run_dir.parent),
            "--type",
            "nbmill.model.*",
            "--json",
            cwd=ROOT,
        ).stdout
    )
    moves = [(e["type"], e["data"].get("alias")) for e in events]
    assert moves[0] == ("nbmill.model.registered", None)
    assert {("nbmill.model.promoted", "staging"), ("nbmill.model.promoted", "production")} <= set(
        moves
    )
    assert moves[-1][0] == "nbmill.model.deployed"
    assert all(e["data"]["who"] and e["data"]["why"] == "end-to-end test" for e in events)
