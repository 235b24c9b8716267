"""The Azure ML back end, offline: real azure-ai-ml entities written as YAML and loaded back by
the SDK's own loaders and validators, nbmill's own checks where the SDK makes none, and each
check shown to fail on a broken file. Live calls need a workspace and are skipped without one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nbmill.errors import NbmillError
from nbmill.monitor.thresholds import Thresholds
from tests.conftest import ROOT, nbmill, write_notebook

pytest.importorskip("azure.ai.ml", reason="the azure dependency group is not installed")

from nbmill.azure import endpoints, jobs, monitoring  # noqa: E402
from nbmill.azure.settings import AzureSettings, settings_from  # noqa: E402
from nbmill.pipeline.runner import plan  # noqa: E402

RUN_ID = "20261201T120000000Z-abcdef"


@pytest.fixture(scope="module")
def job_file(tmp_path_factory) -> Path:
    planned = plan(ROOT / "pipelines" / "training.yml", ROOT / "params" / "prod.yml")
    settings = settings_from(planned.params_file.sections)
    job = jobs.pipeline_job(planned, settings, RUN_ID, ROOT)
    return jobs.write(job, tmp_path_factory.mktemp("job") / "job.yml")


def broken_copy(path: Path, tmp_path: Path, change) -> Path:
    document = yaml.safe_load(path.read_text())
    change(document)
    copy = tmp_path / path.name
    copy.write_text(yaml.safe_dump(document))
    return copy


# --- pipeline jobs ------------------------------------------------------------------------------


def test_the_training_pipeline_is_an_azure_ml_pipeline_job_the_sdk_validates(job_file):
    assert jobs.validate(job_file) == []
    job = yaml.safe_load(job_file.read_text())
    assert set(job["jobs"]) == {"prep", "train", "evaluate", "deploy"}  # one command job a step
    assert job["settings"]["default_compute"] == "azureml:cpu-cluster"  # params/prod.yml
    train = job["jobs"]["train"]
    assert train["inputs"] == {"prep": {"path": "${{parent.jobs.prep.outputs.run}}"}}
    assert train["outputs"] == {"run": {"type": "uri_folder"}}
    command = train["component"]["command"]
    assert "python -m papermill notebooks/train.ipynb ${{outputs.run}}/notebooks/train.ipynb" in (
        " ".join(command.split())
    )
    assert "-p train_data ${{inputs.prep}}/data/train.csv" in command
    assert '"alpha": 0.5' in command  # the resolved parameters of params/prod.yml
    assert "nbconvert --to html" in command
    determinism = {n: j["component"]["is_deterministic"] for n, j in job["jobs"].items()}
    # No step claims reuse it could not get: each command names its run.
    assert determinism == {"prep": False, "train": False, "evaluate": False, "deploy": False}
    assert all(RUN_ID in j["component"]["command"] for j in job["jobs"].values())
    assert job["jobs"]["deploy"]["limits"]["timeout"] == 600


def test_every_step_runs_in_the_environment_of_environment_yml_plus_azure_mls_mlflow(job_file):
    job = yaml.safe_load(job_file.read_text())
    local = yaml.safe_load((ROOT / "environment.yml").read_text())
    (local_pins,) = [d["pip"] for d in local["dependencies"] if isinstance(d, dict)]
    for step in job["jobs"].values():
        conda = step["component"]["environment"]["conda_file"]
        (pins,) = [d["pip"] for d in conda["dependencies"] if isinstance(d, dict)]
        assert pins == [*local_pins, "azureml-mlflow==1.60.0"]


def test_jobs_get_azure_mls_mlflow_plugin_at_the_version_make_setup_azure_installs():
    """One version of the plugin: uv.lock's (the azure group), in every job's environment."""
    import re

    from nbmill.azure.environment import AZUREML_MLFLOW

    lock = (ROOT / "uv.lock").read_text()
    (locked,) = re.findall(r'name = "azureml-mlflow"\nversion = "([^"]+)"', lock)
    assert AZUREML_MLFLOW == f"azureml-mlflow=={locked}"


def test_the_azure_environment_is_consistent():
    """`make setup-azure` installs a set whose requirements all hold (`uv pip check`)."""
    from tests.azureml_runtime import uv

    done = subprocess.run(
        [uv(), "pip", "check", "--python", sys.executable], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _drop_command(job: dict) -> None:
    del job["jobs"]["train"]["component"]["command"]


def _drop_environment(job: dict) -> None:
    del job["jobs"]["train"]["component"]["environment"]


def _bind_to_a_missing_step(job: dict) -> None:  # the SDK accepts it offline; nbmill does not
    job["jobs"]["train"]["inputs"]["prep"]["path"] = "${{parent.jobs.nowhere.outputs.run}}"


def _use_an_undeclared_input(job: dict) -> None:
    component = job["jobs"]["train"]["component"]
    component["command"] = component["command"].replace("${{inputs.prep}}", "${{inputs.data}}")


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [
        (_drop_command, "command"),
        (_drop_environment, "jobs.train.component.environment: Missing data for required field"),
        (_bind_to_a_missing_step, "bound to job 'nowhere', which is not in the pipeline"),
        (_use_an_undeclared_input, "uses inputs.data, which it does not declare"),
    ],
)
def test_a_broken_job_file_fails_the_sdks_validation_naming_why(
    job_file, tmp_path, breakage, reason
):
    problems = jobs.validate(broken_copy(job_file, tmp_path, breakage))
    assert problems and reason in " ".join(problems)


def test_the_dry_run_command_writes_and_checks_the_job(tmp_path):
    done = nbmill(
        "run", "pipelines/training.yml", "--params", "params/prod.yml", "--on", "azureml",
        "--dry-run", "--out", str(tmp_path), cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"pipeline job: {tmp_path / 'job.yml'} (loaded back by the SDK and checked: valid)" in (
        done.stdout
    )
    assert jobs.validate(tmp_path / "job.yml") == []


def test_a_bad_azure_section_is_named():
    with pytest.raises(NbmillError, match="prod.yml: azure: mirror_percent: Input should be less"):
        settings_from({"azure": {"mirror_percent": 80}}, "prod.yml")
    with pytest.raises(NbmillError, match="azure: computer: Extra inputs are not permitted"):
        settings_from({"azure": {"computer": "x"}})


# --- blue/green endpoints -----------------------------------------------------------------------


def test_the_first_deployment_is_blue_then_each_new_one_takes_the_other_colour():
    first = endpoints.plan_rollout("e", {}, set())
    assert (first.new, first.old, first.before, first.after) == (
        "blue",
        None,
        {"blue": 0},
        {"blue": 100},
    )
    second = endpoints.plan_rollout("e", {"blue": 100}, {"blue"}, mirror_percent=10)
    assert (second.new, second.old) == ("green", "blue")
    assert second.before == {"blue": 100, "green": 0} and second.mirror == {"green": 10}
    assert second.after == {"blue": 0, "green": 100}  # blue is kept, for rollback
    third = endpoints.plan_rollout("e", {"blue": 0, "green": 100}, {"blue", "green"})
    assert (third.new, third.old) == ("blue", "green")


@pytest.mark.parametrize(
    ("traffic", "mirror", "problem"),
    [
        ({"blue": 60, "green": 30}, {}, "traffic sums to 90%, not 100%"),
        ({"blue": 100}, {"green": 60}, "mirror traffic to 'green' is 60%: at most 50%"),
        ({"blue": 100, "red": 0}, {}, "'red', which is not a deployment"),
        ({"blue": 100}, {"blue": 10}, "'blue' takes live traffic"),
        ({"blue": 100.5}, {}, "give a whole percent"),
    ],
)
def test_traffic_that_does_not_add_up_is_refused(traffic, mirror, problem):
    problems = endpoints.check_traffic(traffic, mirror, {"blue", "green"})
    assert any(problem in p for p in problems), problems


@pytest.fixture(scope="module")
def endpoint_dir(tmp_path_factory) -> Path:
    model = tmp_path_factory.mktemp("model")
    (model / "MLmodel").write_text("flavors: {}\n")
    rollout = endpoints.plan_rollout("diabetes", {"blue": 100}, {"blue"}, mirror_percent=10)
    identity = {"model": "diabetes-ridge", "version": "3"}
    out = tmp_path_factory.mktemp("endpoint")
    return endpoints.write(rollout, model, AzureSettings(), identity, out)


def test_endpoint_and_deployment_yaml_load_with_the_sdk_and_collect_for_monitoring(endpoint_dir):
    assert endpoints.validate(endpoint_dir) == []
    deployment = yaml.safe_load((endpoint_dir / "deployment-green.yml").read_text())
    assert set(deployment["data_collector"]["collections"]) == {"model_inputs", "model_outputs"}
    assert deployment["model"]["type"] == "mlflow_model"
    endpoint = yaml.safe_load((endpoint_dir / "endpoint.yml").read_text())
    assert endpoint["auth_mode"] == "key" and endpoint["traffic"] == {"blue": 0, "green": 100}


def test_a_deployment_serves_the_workspaces_registered_version_and_registers_no_copy(
    tmp_path, monkeypatch
):
    """With the workspace as MLflow's registry, the version a run registered is an Azure ML
    model version already: the deployment names it, and carries no files to register anew."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "azureml://westeurope.api.azureml.ms/mlflow/v1.0/x")
    model = tmp_path / "model"
    model.mkdir()
    (model / "MLmodel").write_text("flavors: {}\n")
    rollout = endpoints.plan_rollout("diabetes", {}, set(), mirror_percent=0)
    identity = {"model": "diabetes-ridge", "version": "7"}
    out = endpoints.write(rollout, model, AzureSettings(), identity, tmp_path / "out")
    assert endpoints.validate(out) == []
    deployment = yaml.safe_load((out / "deployment-blue.yml").read_text())
    assert deployment["model"] == "azureml:diabetes-ridge:7"
    loaded = __import__("azure.ai.ml", fromlist=["load_online_deployment"]).load_online_deployment(
        source=str(out / "deployment-blue.yml")
    )
    assert isinstance(loaded.model, str) and loaded.model.endswith("diabetes-ridge:7")


def test_a_model_from_another_store_is_uploaded_from_a_folder_named_relative_to_the_file(
    endpoint_dir,
):
    deployment = yaml.safe_load((endpoint_dir / "deployment-green.yml").read_text())
    path = deployment["model"]["path"]
    assert not Path(path).is_absolute()
    assert (endpoint_dir / path / "MLmodel").is_file()
    assert deployment["model"]["tags"] == {"nbmill.model": "diabetes-ridge", "nbmill.version": "3"}


@pytest.mark.parametrize(
    ("file", "change", "problem"),
    [
        ("endpoint.yml", lambda d: d.update(traffic={"blue": 50, "green": 40}), "sums to 90%"),
        ("endpoint.yml", lambda d: d.update(auth_mode="aml_token"), "not key"),
        ("endpoint.yml", lambda d: d.update(traffic={"blue": 0, "gold": 100}), "'gold'"),
        (
            "deployment-green.yml",
            lambda d: d["data_collector"]["collections"].pop("model_outputs"),
            "not model_inputs and model_outputs",
        ),
        ("deployment-green.yml", lambda d: d.update(instance_count="many"), "instance_count"),
    ],
)
def test_a_broken_endpoint_or_deployment_file_is_refused(
    endpoint_dir, tmp_path, file, change, problem
):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(endpoint_dir, copy)
    broken_copy(copy / file, copy, change)
    problems = endpoints.validate(copy)
    assert any(problem in p for p in problems), problems


# --- Azure ML monitoring ------------------------------------------------------------------------


def schedule_file(tmp_path: Path, limits: Thresholds) -> Path:
    schedule = monitoring.schedule_entity(
        "diabetes-green-monitor", "diabetes", "green", "azureml:diabetes-train:1", limits,
        AzureSettings(alert_emails=["ops@example.com"]),
    )  # fmt: skip
    return monitoring.write(schedule, tmp_path / "schedule.yml")


def test_the_monitor_schedule_loads_with_the_sdk_and_keeps_the_local_thresholds(tmp_path):
    limits = Thresholds()
    path = schedule_file(tmp_path, limits)
    assert monitoring.validate(path, limits) == []
    schedule = yaml.safe_load(path.read_text())
    signals = schedule["create_monitor"]["monitoring_signals"]
    assert set(signals) == {"data-drift", "prediction-drift", "data-quality"}
    assert signals["data-drift"]["metric_thresholds"] == {
        "numerical": {"normalized_wasserstein_distance": 0.1},
        "categorical": {"jensen_shannon_distance": 0.1},
    }
    quality = signals["data-quality"]["metric_thresholds"]["numerical"]
    assert quality == {
        "null_value_rate": 0.0,
        "data_type_error_rate": 0.0,
        "out_of_bounds_rate": 0.0,
    }
    assert schedule["trigger"]["expression"] == "0 6 * * *"
    assert schedule["create_monitor"]["alert_notification"]["emails"] == ["ops@example.com"]
    target = schedule["create_monitor"]["monitoring_target"]
    assert target["endpoint_deployment_id"] == "azureml:diabetes:green"


def test_a_schedule_without_a_signal_or_with_changed_thresholds_is_refused(tmp_path):
    limits = Thresholds()
    path = schedule_file(tmp_path, limits)
    dropped = (
        broken_copy(
            path,
            tmp_path / "x",
            lambda d: d["create_monitor"]["monitoring_signals"].pop("data-quality"),
        )
        if (tmp_path / "x").mkdir() is None
        else None
    )
    assert "no data-quality signal" in monitoring.validate(dropped, limits)
    assert any(
        "null_value_rate" in p for p in monitoring.validate(path, Thresholds(null_value_rate=0.1))
    )


def test_a_drift_threshold_of_zero_that_the_sdk_would_drop_is_caught(tmp_path):
    limits = Thresholds(normalized_wasserstein_distance=0.0)
    problems = monitoring.validate(schedule_file(tmp_path, limits), limits)
    assert any(
        "would not send the numerical normalized_wasserstein_distance" in p for p in problems
    )


def test_the_monitor_schedule_command_uses_the_monitoring_pipelines_thresholds(tmp_path):
    done = nbmill(
        "monitor-schedule", "diabetes-ridge@production", "--endpoint", "diabetes",
        "--training-data", "azureml:diabetes-train:1", "--dry-run", "--out", str(tmp_path),
        cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert monitoring.validate(tmp_path / "schedule.yml", Thresholds()) == []


def test_the_schedule_reads_only_the_azure_section_of_the_params_file(tmp_path):
    """params/prod.yml is planned against the training pipeline: its other sections do not
    apply to the monitoring pipeline (which has no `seed`), its azure: section does."""
    done = nbmill(
        "monitor-schedule", "diabetes-ridge@production", "--endpoint", "diabetes",
        "--params", "params/prod.yml", "--training-data", "azureml:diabetes-ridge-training:3",
        "--dry-run", "--out", str(tmp_path), cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    schedule = yaml.safe_load((tmp_path / "schedule.yml").read_text())
    signals = schedule["create_monitor"]["monitoring_signals"]
    for signal in signals.values():
        reference = signal["reference_data"]
        assert reference["data_column_names"] == {"target_column": "target"}
        assert reference["input_data"]["path"] == "azureml:diabetes-ridge-training:3"


def test_a_schedule_that_would_alert_no_one_is_refused_before_anything_is_created(
    tmp_path, monkeypatch
):
    for variable in ("AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE_NAME"):
        monkeypatch.delenv(variable, raising=False)
    target = monitoring.Monitored(
        "diabetes-ridge@production", "diabetes", ROOT, params_file=str(ROOT / "params/prod.yml")
    )
    with pytest.raises(NbmillError, match="alert_emails is empty, so a breach would alert no one"):
        monitoring.create_schedule(target)


# --- local runs stay local ----------------------------------------------------------------------


def test_a_local_run_never_imports_azure_ai_ml(project):
    write_notebook(project / "notebooks" / "one.ipynb", "x = 1", "y = x + 1")
    (project / "pipelines" / "p.yml").write_text(
        "name: p\nsteps:\n  one:\n    notebook: notebooks/one.ipynb\n"
    )
    script = (
        "import sys\n"
        "from nbmill.cli import main\n"
        "code = main(['run', 'pipelines/p.yml'])\n"
        "assert code == 0, code\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('azure.ai.ml'))\n"
        "print('azure modules:', loaded)\n"
        "sys.exit(1 if loaded else 0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=project, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "azure modules: []" in done.stdout
