"""The model registry: registration with provenance, the promotion gate, aliases and the ledger.

Real MLflow (a sqlite store in a temporary folder), real scikit-learn models, a real ledger.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from nbmill import context
from nbmill._hashing import sha256_file, tree_digest
from nbmill.errors import NbmillError
from nbmill.governance.ledger import Ledger
from nbmill.models import aliases as moves
from nbmill.models import evaluate, registry
from nbmill.models.gate import gate
from nbmill.project.config import load_config, tracking_uri
from nbmill.records.provenance import who
from nbmill.records.record import RunRecord
from nbmill_example import diabetes
from tests.conftest import mlflow_store, run_fields

GATE = {"metric": "r2", "greater_is_better": True, "min_improvement": 0.0}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One MLflow store for the module; each test registers its own model name."""
    with mlflow_store(tmp_path_factory.mktemp("mlflow"), "registry") as uri:
        yield uri


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    train, test = diabetes.split(diabetes.load(), test_size=0.2, seed=42)
    path = tmp_path_factory.mktemp("data") / "train.csv"
    diabetes.save(train, path)
    return SimpleNamespace(train=train, test=test, train_csv=path)


@pytest.fixture(scope="module")
def logged(store, data):
    """Two logged models: a good Ridge (r2 ~0.45) and one shrunk to nearly nothing (r2 ~0)."""
    import mlflow

    models = {}
    for label, alpha in (("good", 1.0), ("poor", 1e5)):
        model = diabetes.fit(data.train, alpha=alpha)
        with mlflow.start_run(run_name=label):
            mlflow.log_metric("evaluate.test_r2", diabetes.evaluate(model, data.test)["r2"])
            models[label] = diabetes.log_model(model, data.train)
    return models


@pytest.fixture
def name(request) -> str:
    return "m-" + request.node.name.replace("_", "-")[:60]


@pytest.fixture
def project(tmp_path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    return folder


def ledger_events(project: Path, kind: str | None = None) -> list[dict]:
    events = Ledger(load_config(project).ledger).events()
    return [e for e in events if kind is None or e["type"] == kind]


def register(info, name, project, model_dir, data, run_id="20261129T000000000Z-aaaaaa") -> str:
    return registry.register_model(
        info,
        name,
        run_id=run_id,
        commit="0123abcd",
        data_sha256=sha256_file(data.train_csv),
        environment_fingerprint="f1ng3r",
        model_dir=model_dir,
        metrics={"train_r2": 0.5},
        project_dir=project,
    )


def gate_run(name, project, model_dir, data, **settings):
    return evaluate.evaluate_and_gate(
        name,
        model_dir,
        diabetes.scorer(data.test),
        **{**GATE, **settings},
        project_dir=project,
    )


def aliases(name: str) -> dict[str, str]:
    from mlflow import MlflowClient

    from nbmill.models import store

    # MLflow's own aliases and registered-model tags are never used: Azure ML lacks them.
    model = MlflowClient().get_registered_model(name)
    assert not model.aliases and not model.tags
    return store.registered(store.Store.of(), name).aliases


# --- registration --------------------------------------------------------------------------


def test_register_tags_the_version_with_its_run_commit_data_and_environment(
    logged, data, name, project, tmp_path
):
    from mlflow import MlflowClient

    version = register(logged["good"], name, project, tmp_path / "model", data)
    tags = MlflowClient().get_model_version(name, version).tags
    assert version == "1"
    assert tags["nbmill.run_id"] == "20261129T000000000Z-aaaaaa"
    assert tags["nbmill.commit"] == "0123abcd"
    assert tags["nbmill.data_sha256"] == sha256_file(data.train_csv)
    assert tags["nbmill.environment"] == "f1ng3r"


def test_the_artifacts_digest_is_that_of_the_registered_files_and_of_the_run_model_folder(
    logged, data, name, project, tmp_path
):
    import mlflow
    from mlflow import MlflowClient

    model_dir = tmp_path / "model"
    version = register(logged["good"], name, project, model_dir, data)
    tag = MlflowClient().get_model_version(name, version).tags["nbmill.artifacts_sha256"]
    location = MlflowClient().get_model_version_download_uri(name, version)
    downloaded = Path(mlflow.artifacts.download_artifacts(location))
    assert tree_digest(downloaded) == tag
    assert tree_digest(model_dir) == tag
    assert (model_dir / "MLmodel").is_file()
    assert diabetes.load_model(model_dir).predict(data.test[diabetes.FEATURES]).shape == (89,)


def test_registering_emits_an_event_saying_who_registered_what_from_which_run(
    logged, data, name, project, tmp_path
):
    version = register(logged["good"], name, project, tmp_path / "model", data)
    (event,) = ledger_events(project, "nbmill.model.registered")
    assert event["subject"] == f"models/{name}/{version}"
    data_ = event["data"]
    assert data_["model"] == name and data_["version"] == version
    assert data_["run_id"] == "20261129T000000000Z-aaaaaa" and data_["who"] == who()
    assert data_["artifacts_sha256"] == tree_digest(tmp_path / "model")
    assert data_["metrics"] == {"train_r2": 0.5}


def test_a_failed_download_leaves_the_run_model_folder_as_it_was(
    store, data, name, project, tmp_path
):
    import mlflow
    from mlflow import MlflowClient
    from mlflow.utils.file_utils import local_file_uri_to_path

    fitted = diabetes.fit(data.train, alpha=1.0)
    with mlflow.start_run(run_name="lost") as run:
        uri = diabetes.log_model(fitted, data.train)
    location = MlflowClient().get_run(run.info.run_id).info.artifact_uri
    shutil.rmtree(Path(local_file_uri_to_path(location)) / "model")  # the store lost them
    model_dir = tmp_path / "step" / "model"
    diabetes.save_model(fitted, data.train, model_dir)  # the step's output, from before
    before = tree_digest(model_dir)
    with pytest.raises(NbmillError, match=f"{model_dir} was left as it was"):
        register(uri, name, project, model_dir, data)
    assert tree_digest(model_dir) == before
    assert list(model_dir.parent.iterdir()) == [model_dir]  # no half-made folder beside it


def test_provenance_outside_a_run_has_the_data_hash_and_no_environment(data, project):
    found = registry.run_provenance(data.train_csv, project_dir=project)
    assert found["run_id"] == "scratch"
    assert found["data_sha256"] == sha256_file(data.train_csv)
    assert found["environment_fingerprint"] == ""


# --- the gate (pure) -----------------------------------------------------------------------


def test_gate_promotes_the_first_model_when_there_is_no_production_model():
    decision = gate("m", "1", 0.41, None, "r2", True, 0.0)
    assert decision.promoted and decision.reason == "no production model yet"
    assert decision.production_score is None and decision.delta is None


def test_gate_promotes_a_better_candidate():
    decision = gate("m", "2", 0.45, 0.40, "r2", True, 0.0, production_version="1")
    assert decision.promoted
    assert decision.delta == pytest.approx(0.05) and decision.improvement == pytest.approx(0.05)
    assert "beats production v1" in decision.reason


def test_gate_does_not_promote_a_worse_candidate_and_says_why():
    decision = gate("m", "2", 0.30, 0.40, "r2", True, 0.0, production_version="1")
    assert not decision.promoted
    assert decision.reason.startswith("not promoted: r2 0.3000 does not beat production v1")


def test_gate_does_not_promote_an_equal_candidate():
    decision = gate("m", "2", 0.40, 0.40, "r2", True, 0.0, production_version="1")
    assert not decision.promoted and decision.delta == 0.0


def test_gate_does_not_promote_an_improvement_within_min_improvement():
    assert not gate("m", "2", 0.405, 0.40, "r2", True, 0.01).promoted
    assert gate("m", "2", 0.415, 0.40, "r2", True, 0.01).promoted


def test_gate_for_a_lower_is_better_metric_promotes_a_smaller_error():
    lower = gate("m", "2", 52.0, 55.0, "rmse", False, 1.0, production_version="1")
    assert lower.promoted and lower.delta == -3.0 and lower.improvement == 3.0
    higher = gate("m", "2", 56.0, 55.0, "rmse", False, 0.0, production_version="1")
    assert not higher.promoted and "lower is better" in higher.reason


def test_gate_refuses_a_negative_min_improvement_and_a_score_that_is_not_a_number():
    with pytest.raises(NbmillError, match="min_improvement must be a number >= 0"):
        gate("m", "2", 0.4, 0.3, "r2", True, -0.1)
    with pytest.raises(NbmillError, match="not a finite number"):
        gate("m", "2", float("nan"), 0.3, "r2", True, 0.0)


def test_a_notebook_shows_the_verdict_the_reason_and_the_numbers():
    decision = gate("m", "2", 0.30, 0.40, "r2", True, 0.0, production_version="1")
    shown = decision._repr_markdown_()
    assert shown.startswith("**not promoted**: r2 0.3000 does not beat production v1's 0.4000")
    assert "| candidate | v2: 0.3000 |" in shown and "| production | v1: 0.4000 |" in shown


# --- evaluate and gate ---------------------------------------------------------------------


@pytest.fixture
def in_run(tmp_path, project, monkeypatch):
    """The environment the runner gives a step: here the evaluate step of a run whose runs
    folder is outside the project (as with --runs-dir)."""
    runs = tmp_path / "elsewhere" / "runs"
    run_dir = runs / "20261129T101010101Z-bbbbbb"
    run_dir.mkdir(parents=True)
    git = {"commit": "feedc0de", "dirty": False, "branch": None}
    fields = run_fields(why="weekly retrain", git=git)
    environment = {"fingerprint": "env-fp", "distributions": 1, "file": "environment.txt",
                   "executable": "python"}  # fmt: skip
    record = {"schema": 1, "id": run_dir.name, "status": "running", **fields}
    RunRecord.from_data(run_dir, {**record, "environment": environment}).save()
    for key, value in {
        context.ENV_RUN_ID: run_dir.name,
        context.ENV_RUN_DIR: str(run_dir),
        context.ENV_STEP: "evaluate",
        context.ENV_PROJECT_DIR: str(project),
        context.ENV_PIPELINE: "training",
    }.items():
        monkeypatch.setenv(key, value)
    return SimpleNamespace(
        project=project,
        run_dir=run_dir,
        id=run_dir.name,
        ledger=Ledger(runs / "ledger.jsonl"),
        metrics=lambda: json.loads((run_dir / "metrics" / "evaluate.json").read_text()),
    )


def promoted_events(ledger: Ledger) -> list[dict]:
    return [e["data"] for e in ledger.events() if e["type"] == "nbmill.model.promoted"]


def test_the_first_candidate_gets_staging_and_production_and_both_moves_are_in_the_ledger(
    logged, data, name, in_run, tmp_path
):
    model_dir = tmp_path / "model"
    version = register(logged["good"], name, in_run.project, model_dir, data, run_id=in_run.id)
    decision = gate_run(name, in_run.project, model_dir, data, out_dir=tmp_path / "eval")
    assert decision.promoted and decision.reason == "no production model yet"
    assert decision.candidate_version == version
    assert aliases(name) == {"staging": version, "production": version}
    moves = promoted_events(in_run.ledger)
    assert [(m["alias"], m["version"], m["previous_version"]) for m in moves] == [
        ("staging", version, None),
        ("production", version, None),
    ]
    for move in moves:
        assert move["who"] == who() and move["why"] == "weekly retrain"
        assert move["run_id"] == in_run.id and move["model"] == name
        assert move["decision"] == "no production model yet"
    assert in_run.metrics() == {"promoted": 1.0, "candidate_version": 1.0}
    assert not load_config(in_run.project).ledger.exists()  # the run's ledger, not the project's
    recorded = json.loads((tmp_path / "eval" / "gate.json").read_text())
    assert recorded["promoted"] is True and len(recorded["moves"]) == 2


def test_a_better_candidate_gets_staging_while_production_stays(
    logged, data, name, in_run, tmp_path
):
    first = register(logged["poor"], name, in_run.project, tmp_path / "m1", data)
    gate_run(name, in_run.project, tmp_path / "m1", data)
    second = register(logged["good"], name, in_run.project, tmp_path / "m2", data)
    decision = gate_run(name, in_run.project, tmp_path / "m2", data)
    assert decision.promoted and decision.production_version == first
    assert decision.candidate_score > decision.production_score
    assert aliases(name) == {"staging": second, "production": first}
    last = promoted_events(in_run.ledger)[-1]
    assert (last["alias"], last["version"], last["previous_version"]) == ("staging", second, first)
    metrics = in_run.metrics()
    assert metrics["promoted"] == 1.0 and metrics["production_version"] == float(first)
    assert metrics["production_r2"] == pytest.approx(decision.production_score)
    assert metrics["gate_delta"] == pytest.approx(decision.delta)


def test_a_candidate_that_is_not_better_moves_no_alias_and_records_why(
    logged, data, name, in_run, tmp_path
):
    from mlflow import MlflowClient

    first = register(logged["good"], name, in_run.project, tmp_path / "m1", data)
    gate_run(name, in_run.project, tmp_path / "m1", data)
    before = aliases(name)
    moves_before = promoted_events(in_run.ledger)
    second = register(logged["poor"], name, in_run.project, tmp_path / "m2", data)
    decision = gate_run(name, in_run.project, tmp_path / "m2", data, out_dir=tmp_path / "eval")
    assert not decision.promoted
    assert decision.reason.startswith(f"not promoted: r2 {decision.candidate_score:.4f}")
    assert f"production v{first}" in decision.reason
    assert aliases(name) == before == {"staging": first, "production": first}
    assert promoted_events(in_run.ledger) == moves_before
    assert in_run.metrics()["promoted"] == 0.0
    tags = MlflowClient().get_model_version(name, second).tags
    assert tags["nbmill.gate.promoted"] == "false" and tags["nbmill.gate.reason"] == decision.reason
    recorded = json.loads((tmp_path / "eval" / "gate.json").read_text())
    assert recorded["promoted"] is False and recorded["moves"] == []


def test_an_equally_good_candidate_is_not_promoted(logged, data, name, in_run, tmp_path):
    register(logged["good"], name, in_run.project, tmp_path / "m1", data)
    gate_run(name, in_run.project, tmp_path / "m1", data)
    register(logged["good"], name, in_run.project, tmp_path / "m2", data)
    decision = gate_run(name, in_run.project, tmp_path / "m2", data)
    assert not decision.promoted and decision.delta == 0.0


def test_the_gate_refuses_a_production_model_whose_files_changed_after_registration(
    logged, data, name, in_run, tmp_path
):
    from mlflow import MlflowClient
    from mlflow.utils.file_utils import local_file_uri_to_path

    first = register(logged["good"], name, in_run.project, tmp_path / "m1", data)
    gate_run(name, in_run.project, tmp_path / "m1", data)
    register(logged["good"], name, in_run.project, tmp_path / "m2", data)
    client = MlflowClient()
    run = client.get_run(client.get_model_version(name, first).run_id)
    stored = Path(local_file_uri_to_path(run.info.artifact_uri)) / "model"  # the store's copy
    requirements = stored / "requirements.txt"
    original = requirements.read_text()
    try:
        requirements.write_text(original + "tampered==1.0\n")
        with pytest.raises(NbmillError, match=f"version {first}: its files have sha256"):
            gate_run(name, in_run.project, tmp_path / "m2", data)
    finally:
        requirements.write_text(original)


def test_the_gate_needs_the_candidate_to_be_registered(data, name, in_run, logged, tmp_path):
    register(logged["good"], name, in_run.project, tmp_path / "m1", data)
    diabetes.save_model(diabetes.fit(data.train, alpha=2.0), data.train, tmp_path / "other")
    with pytest.raises(NbmillError, match=f"no version of model '{name}' has these files"):
        gate_run(name, in_run.project, tmp_path / "other", data)


def test_an_unknown_gate_metric_names_the_metrics_there_are(logged, data, name, in_run, tmp_path):
    register(logged["good"], name, in_run.project, tmp_path / "m1", data)
    with pytest.raises(NbmillError, match=r"gate metric 'auc' .* \(mae, r2, rmse\)"):
        gate_run(name, in_run.project, tmp_path / "m1", data, metric="auc")


def test_inside_a_run_registration_uses_the_run_s_provenance(data, in_run):
    found = registry.run_provenance(data.train_csv)
    assert found == {
        "run_id": in_run.id,
        "commit": "feedc0de",
        "data_sha256": sha256_file(data.train_csv),
        "environment_fingerprint": "env-fp",
        "data_path": str(data.train_csv),
    }


# --- promote and rollback by hand ----------------------------------------------------------


@pytest.fixture
def three_versions(logged, data, name, project, tmp_path):
    """Versions 1, 2, 3 of a model; 1 is production."""
    for number in (1, 2, 3):
        register(
            logged["good"], name, project, tmp_path / f"m{number}", data, run_id=f"run-{number}"
        )
    moves.promote(name, "1", reason="first release", project_dir=project)
    return name


def test_promote_moves_production_and_the_ledger_says_who_and_why(three_versions, project):
    move = moves.promote(three_versions, 2, reason="CAB-142 approved", project_dir=project)
    assert aliases(three_versions) == {"production": "2"}
    assert (move.version, move.previous_version, move.action) == ("2", "1", "promote")
    event = ledger_events(project, "nbmill.model.promoted")[-1]
    assert event["subject"] == f"models/{three_versions}/2"
    assert event["data"] == {
        "model": three_versions,
        "version": "2",
        "alias": "production",
        "previous_version": "1",
        "who": who(),
        "why": "CAB-142 approved",
        "run_id": "run-2",
        "action": "promote",
        "approved_by": None,
    }


def test_rollback_returns_production_to_the_version_before_and_again(three_versions, project):
    moves.promote(three_versions, 2, reason="release 2", project_dir=project)
    moves.promote(three_versions, 3, reason="release 3", project_dir=project)
    move = moves.rollback(three_versions, reason="3 mispredicts", project_dir=project)
    assert (move.version, move.previous_version, move.action) == ("2", "3", "rollback")
    assert aliases(three_versions) == {"production": "2"}
    moves.rollback(three_versions, reason="2 as well", project_dir=project)
    assert aliases(three_versions) == {"production": "1"}
    events = ledger_events(project, "nbmill.model.promoted")
    assert [(e["data"]["version"], e["data"]["why"]) for e in events[-2:]] == [
        ("2", "3 mispredicts"),
        ("1", "2 as well"),
    ]
    with pytest.raises(NbmillError, match="no previous production version to roll back to"):
        moves.rollback(three_versions, reason="again", project_dir=project)


def test_rollback_with_no_previous_production_version_says_so(three_versions, project):
    with pytest.raises(NbmillError) as raised:
        moves.rollback(three_versions, reason="oops", project_dir=project)
    assert str(raised.value) == (
        f"model '{three_versions}': no previous production version to roll back to "
        "(production is version 1; production history: 1)"
    )
    assert aliases(three_versions) == {"production": "1"}


def test_rollback_of_a_model_never_in_production_says_so(logged, data, name, project, tmp_path):
    register(logged["good"], name, project, tmp_path / "m1", data)
    with pytest.raises(NbmillError, match=f"model '{name}' has no production version"):
        moves.rollback(name, reason="oops", project_dir=project)


def test_promoting_a_version_that_does_not_exist_names_the_model_and_its_versions(
    three_versions, project
):
    with pytest.raises(NbmillError) as raised:
        moves.promote(three_versions, 9, reason="typo", project_dir=project)
    assert str(raised.value) == f"model '{three_versions}' has no version 9 (versions: 1, 2, 3)"
    with pytest.raises(NbmillError, match=r"no registered model 'nope' \(registered models: "):
        moves.promote("nope", 1, reason="typo", project_dir=project)


def test_promoting_by_hand_needs_a_reason(three_versions, project):
    with pytest.raises(NbmillError, match="give a reason"):
        moves.promote(three_versions, 2, project_dir=project)
    assert aliases(three_versions) == {"production": "1"}


def test_promoting_the_version_that_already_holds_the_alias_is_refused(three_versions, project):
    with pytest.raises(NbmillError, match="version 1 already holds alias 'production'"):
        moves.promote(three_versions, 1, reason="again", project_dir=project)


# --- reading -------------------------------------------------------------------------------


def test_list_models_shows_versions_aliases_runs_and_metrics(three_versions, project, store):
    moves.promote(three_versions, 3, alias="staging", reason="try 3", project_dir=project)
    rows = registry.list_models(three_versions, project_dir=project)
    assert [(r["version"], r["aliases"], r["run_id"]) for r in rows] == [
        ("3", ["staging"], "run-3"),
        ("2", [], "run-2"),
        ("1", ["production"], "run-1"),
    ]
    assert rows[0]["name"] == three_versions and rows[0]["created"].endswith("Z")
    assert rows[0]["metrics"]["evaluate.test_r2"] == pytest.approx(0.45, abs=0.05)
    assert rows[0]["artifacts_sha256"] and rows[0]["commit"] == "0123abcd"
    narrow = registry.list_models(three_versions, metric_names=["nope"], project_dir=project)
    assert narrow[0]["metrics"] == {}
    assert {r["name"] for r in registry.list_models(project_dir=project)} >= {three_versions}


def test_serving_resolves_an_alias_to_verified_files(three_versions, project):
    with registry.resolve_registered(f"{three_versions}@production", project) as resolved:
        folder, expected, identity = resolved
        assert tree_digest(folder) == expected
    assert identity == {
        "model": three_versions,
        "version": "1",
        "alias": "production",
        "run_id": "run-1",
    }
    with registry.resolve_registered(f"{three_versions}/2", project) as (by_version, _, _):
        assert (by_version / "MLmodel").is_file()
    with pytest.raises(NbmillError, match="has no version with alias 'canary'"):
        with registry.resolve_registered(f"{three_versions}@canary", project):
            pass


@pytest.fixture
def scratch(tmp_path, monkeypatch) -> Path:
    """An empty temporary folder for this process and its children: whatever is in it after
    the test was left behind."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    monkeypatch.setenv("TMPDIR", str(folder))
    return folder


def test_a_resolved_registered_model_is_on_disk_only_inside_its_block(
    three_versions, project, scratch
):
    with registry.resolve_registered(f"{three_versions}@production", project) as resolved:
        folder = resolved[0]
        assert (folder / "MLmodel").is_file() and folder.is_relative_to(scratch)
    assert list(scratch.iterdir()) == []
    with pytest.raises(RuntimeError, match="the caller failed"):
        with registry.resolve_registered(f"{three_versions}/2", project):
            raise RuntimeError("the caller failed")
    assert list(scratch.iterdir()) == []


def test_serving_a_registered_alias_and_sending_it_traffic_leave_no_model_copy_behind(
    three_versions, project, data, scratch, tmp_path
):
    from tests.conftest import ServeProcess, nbmill

    held_out = tmp_path / "held_out.csv"
    diabetes.save(data.test, held_out)
    service = ServeProcess(f"{three_versions}@production", cwd=project)
    try:
        service.wait_ready()
        served = [p for p in scratch.iterdir() if p.name.startswith("nbmill-model-")]
        assert len(served) == 1  # while it serves, its download is there
        sent = nbmill(
            "traffic", f"{three_versions}@production", "--data", str(held_out),
            "--rows", "5", "--url", service.base, cwd=project,
            env={"NBMILL_SERVE_KEY": service.key},
        )  # fmt: skip
        assert sent.returncode == 0, sent.stderr
    finally:
        service.stop()
    assert list(scratch.iterdir()) == []


def test_a_dry_run_deploy_of_a_registered_alias_names_files_that_outlive_it(
    three_versions, project, scratch, tmp_path
):
    import yaml

    from tests.conftest import nbmill

    out = tmp_path / "dry-run"
    done = nbmill(
        "deploy", f"{three_versions}@production", "--on", "azureml",
        "--endpoint", "diabetes", "--dry-run", "--out", str(out), cwd=project,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (deployment,) = out.glob("deployment-*.yml")
    model = Path(yaml.safe_load(deployment.read_text())["model"]["path"])
    assert (out / model / "MLmodel").is_file()
    assert list(scratch.iterdir()) == []


def test_a_monitor_check_of_a_registered_alias_leaves_no_model_copy_behind(
    three_versions, project, data, scratch, tmp_path
):
    from nbmill import monitor
    from nbmill.serving.collect import Collector, Deployment, Scored

    where = Deployment(three_versions, "local", tuple(diabetes.FEATURES), three_versions, "1")
    collector = Collector(tmp_path / "collected", where)
    rows = data.test[diabetes.FEATURES].to_numpy()
    collector.add(Scored(time.time(), 200, 0.001, "req-1", rows, rows[:, 0] * 100 + 150))
    collector.close()
    result = monitor.check(three_versions, collect_dir=tmp_path / "collected", project_dir=project)
    assert result.window["version"] == "1" and result.drift
    assert list(scratch.iterdir()) == []


def test_the_mlflow_store_is_the_one_the_environment_names(store, project):
    assert tracking_uri(project) == store == os.environ["MLFLOW_TRACKING_URI"]


def test_the_cli_promotes_rolls_back_and_lists_with_the_ledger_as_witness(
    three_versions, project, store
):
    from tests.conftest import nbmill

    env = {"MLFLOW_TRACKING_URI": store}
    promote = ("models", "promote", three_versions, "3", "--reason", "release 3")
    done = nbmill(*promote, cwd=project, env=env)
    assert done.returncode == 0, done.stderr
    assert f"{three_versions}@production -> version 3 (was version 1)" in done.stdout
    rollback = ("models", "rollback", three_versions, "--reason", "bad latency")
    done = nbmill(*rollback, cwd=project, env=env)
    assert done.returncode == 0 and "-> version 1 (was version 3)" in done.stdout
    listed = json.loads(
        nbmill("models", "list", three_versions, "--json", cwd=project, env=env).stdout
    )
    assert {r["version"]: r["aliases"] for r in listed}["1"] == ["production"]
    whys = [e["data"]["why"] for e in ledger_events(project, "nbmill.model.promoted")]
    assert whys[-2:] == ["release 3", "bad latency"]
    missing = nbmill(*promote[:3], "9", "--reason", "x", cwd=project, env=env)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "9" in missing.stderr


# --- how the registry talks to MLflow --------------------------------------------------------


def store_reads(monkeypatch, store_class, method: str) -> list:
    """Every call of a method of MLflow's own sqlite store (what reaches the database), made
    by anyone, while the test runs; the call still goes through."""
    calls: list = []
    real = getattr(store_class, method)

    def spy(self, *args, **kwargs):
        calls.append(args)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(store_class, method, spy)
    return calls


def test_a_promotion_lists_the_models_versions_once(three_versions, project, monkeypatch):
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    listed = store_reads(monkeypatch, SqlAlchemyStore, "search_model_versions")
    moves.promote(three_versions, 2, reason="release 2", project_dir=project)
    # One listing says who holds which alias; the move writes the new holder's tag and takes
    # the old holder's, without listing again.
    assert len(listed) == 1
    assert aliases(three_versions) == {"production": "2"}


def test_an_alias_moved_halfway_is_held_by_the_version_it_moved_to_last(three_versions, project):
    """A move tags the new holder, then untags the old one; stopped between the two, both are
    tagged, and the newer tag wins."""
    from mlflow import MlflowClient

    from nbmill.models import store

    assert aliases(three_versions) == {"production": "1"}
    client = MlflowClient()
    client.set_model_version_tag(
        three_versions, "3", store.alias_tag("production"), "2999-01-01T00:00:00.000000Z"
    )
    assert aliases(three_versions) == {"production": "3"}
    moves.promote(three_versions, 2, reason="release 2", project_dir=project)
    assert aliases(three_versions) == {"production": "2"}
    held = [v for v in ("1", "2", "3") if "nbmill.alias.production" in client.get_model_version(
        three_versions, v).tags]  # fmt: skip
    assert held == ["2"]


def test_finding_the_candidate_lists_no_runs(logged, data, name, project, tmp_path, monkeypatch):
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    model_dir = tmp_path / "model"
    register(logged["good"], name, project, model_dir, data)
    moves.promote(name, "1", alias="staging", reason="try", project_dir=project)
    runs = store_reads(monkeypatch, SqlAlchemyStore, "get_run")
    candidate = registry.find_candidate(name, model_dir, project)
    assert str(candidate.version) == "1" and aliases(name) == {"staging": "1"}
    assert runs == []


def test_the_registry_leaves_mlflows_own_tracking_uri_alone(
    store, three_versions, project, tmp_path, monkeypatch
):
    import mlflow

    elsewhere = f"sqlite:///{tmp_path}/elsewhere.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)  # the project's store, for nbmill
    mlflow.set_tracking_uri(elsewhere)  # what a notebook's own code may have set (it sets the
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)  # variable too: nbmill must use the store)
    try:
        moves.promote(three_versions, 3, reason="release 3", project_dir=project)
        assert mlflow.get_tracking_uri() == elsewhere
    finally:
        mlflow.set_tracking_uri(store)
    assert aliases(three_versions) == {"production": "3"}


class StubRegistry:
    """A real HTTP server on 127.0.0.1 answering MLflow's REST API with one fixed error."""

    def __init__(self, status: int, code: str):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        answer = json.dumps({"error_code": code, "message": f"{code} from the stub"}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(
    ("status", "code", "missing"),
    [(404, "RESOURCE_DOES_NOT_EXIST", True), (403, "PERMISSION_DENIED", False)],
)
def test_only_a_missing_version_counts_as_deleted(status, code, missing, monkeypatch):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from nbmill.models import store as st

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    stub = StubRegistry(status, code)
    try:
        store = st.Store(stub.uri, MlflowClient(tracking_uri=stub.uri, registry_uri=stub.uri))
        if missing:
            assert st.exists(store, "m", "2") is False
        else:
            with pytest.raises(MlflowException, match="PERMISSION_DENIED from the stub"):
                st.exists(store, "m", "2")
    finally:
        stub.close()


# --- alias history, from the ledger ---------------------------------------------------------


def test_history_at_a_time_answers_which_version_held_production(three_versions, project):
    from nbmill.models import history

    moves.promote(three_versions, 2, reason="release 2", project_dir=project)
    moves.promote(three_versions, 3, reason="release 3", project_dir=project)
    moves.rollback(three_versions, reason="3 mispredicts", project_dir=project)
    found = history.moves(ledger_events(project), three_versions, "production")
    assert [(m["version"], m["from"], m["action"]) for m in found] == [
        ("1", None, "promote"),
        ("2", "1", "promote"),
        ("3", "2", "promote"),
        ("2", "3", "rollback"),
    ]
    times = [m["time"] for m in found]
    before = "2000-01-01T00:00:00Z"
    assert history.holder_at(found, "production", before) is None
    for moment, version in zip(times, ["1", "2", "3", "2"], strict=True):
        assert history.holder_at(found, "production", moment)["version"] == version
    assert history.production_stack(found) == ["1", "2"]
    with pytest.raises(NbmillError, match="give a time zone"):
        history.holder_at(found, "production", "2026-05-03T14:05")


def test_models_history_on_the_command_line_reads_the_ledger(
    three_versions, project, monkeypatch, capsys
):
    from nbmill.cli import main

    moves.promote(three_versions, 2, reason="release 2", project_dir=project)
    moves.rollback(three_versions, reason="2 is slow", project_dir=project)
    monkeypatch.chdir(project)
    second = ledger_events(project, "nbmill.model.promoted")[1]["time"]
    capsys.readouterr()
    assert main(["models", "history", three_versions, "--at", second, "--json"]) == 0
    held = json.loads(capsys.readouterr().out)
    assert held["production"]["version"] == "2" and held["production"]["why"] == "release 2"
    assert main(["models", "history", three_versions]) == 0
    table = capsys.readouterr().out
    assert "rollback" in table and "2 is slow" in table and "release 2" in table


def test_a_promotion_keeps_who_approved_it_in_the_ledger(three_versions, project):
    moves.promote(
        three_versions, 2, reason="release 2", approved_by="Ann Lee <ann@example.com>: ok",
        project_dir=project,
    )  # fmt: skip
    (event,) = [
        e for e in ledger_events(project, "nbmill.model.promoted") if e["data"]["version"] == "2"
    ]
    assert event["data"]["approved_by"] == "Ann Lee <ann@example.com>: ok"
    assert event["data"]["action"] == "promote" and event["data"]["why"] == "release 2"
