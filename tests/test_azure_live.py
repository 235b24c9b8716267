"""The live smoke suite: what nbmill needs of an Azure ML workspace, tried once against a real one.

A team runs it when it connects a workspace (`.azure-pipelines/smoke.yml` runs it weekly and on
demand): skipped without ``AZURE_SUBSCRIPTION_ID``, ``AZURE_RESOURCE_GROUP`` and
``AZUREML_WORKSPACE_NAME`` and a credential that ``DefaultAzureCredential`` finds; the MLflow
probes also need ``MLFLOW_TRACKING_URI`` set to the workspace's (``.azure-pipelines/workspace.sh``
sets it). Everything it creates is named ``nbmill-smoke-*`` and deleted at the end, also when a
check fails.

1. each MLflow feature nbmill uses, on the workspace's tracking service and registry;
2. a one-step pipeline as an Azure ML job, its outputs assembled into a record that verifies;
3. a tiny model deployed to a managed online endpoint, collecting its inputs and outputs;
4. a monitor schedule created on it, then deleted.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import pytest

from tests.conftest import nbmill, write_notebook

pytest.importorskip("azure.ai.ml", reason="the azure dependency group is not installed")

from nbmill.azure.settings import Workspace, configured  # noqa: E402

pytestmark = pytest.mark.skipif(
    not configured(),
    reason="no Azure ML workspace: set AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP and "
    "AZUREML_WORKSPACE_NAME, and sign in (DefaultAzureCredential)",
)
SUFFIX = secrets.token_hex(3)
MODEL = f"nbmill-smoke-{SUFFIX}"
ENDPOINT = f"nbmill-smoke-{SUFFIX}"  # endpoint names: 3-32 characters, a letter first


@pytest.fixture(scope="module")
def workspace_mlflow() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri.startswith("azureml://"):
        pytest.skip("MLFLOW_TRACKING_URI is not the workspace's (source workspace.sh)")
    return uri


@pytest.fixture(scope="module")
def registered(workspace_mlflow, tmp_path_factory):
    """A tiny model, logged and registered the way the train step does it, on the workspace."""
    import mlflow
    import mlflow.sklearn
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    from nbmill.models import log_model_files
    from nbmill.models.requirements import model_requirements

    folder = tmp_path_factory.mktemp("smoke") / "model"
    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0]})
    mlflow.set_tracking_uri(workspace_mlflow)
    mlflow.set_experiment("nbmill-smoke")
    model = LinearRegression().fit(frame, [0.0, 2.0, 4.0])
    mlflow.sklearn.save_model(
        model, str(folder), pip_requirements=model_requirements("scikit-learn", "numpy", "pandas")
    )
    with mlflow.start_run(run_name=f"nbmill-smoke-{SUFFIX}") as run:
        uri = log_model_files(folder)
    from mlflow import MlflowClient

    client = MlflowClient(workspace_mlflow, workspace_mlflow)
    client.create_registered_model(MODEL)
    created = client.create_model_version(MODEL, uri, run_id=run.info.run_id)
    yield {"uri": uri, "run_id": run.info.run_id, "folder": folder, "version": str(created.version)}
    for version in client.search_model_versions(f"name='{MODEL}'"):
        client.delete_model_version(MODEL, version.version)


def test_live_every_mlflow_feature_nbmill_uses_answers(registered, workspace_mlflow, tmp_path):
    from mlflow import MlflowClient

    from nbmill.models import store as st

    client = MlflowClient(workspace_mlflow, workspace_mlflow)
    version = registered["version"]
    client.set_model_version_tag(MODEL, version, st.alias_tag("staging"), "2026-01-01T00:00:00Z")
    client.set_model_version_tag(MODEL, version, "nbmill.run_id", "smoke")
    client.delete_model_version_tag(MODEL, version, "nbmill.run_id")
    store = st.Store(workspace_mlflow, client)
    model = st.registered(store, MODEL)
    assert model.aliases == {"staging": version}
    assert st.versions(store, MODEL)[-1].tags.get("nbmill.run_id") is None
    files = store.download(MODEL, version, tmp_path / "download")
    assert (files / "MLmodel").is_file()
    assert client.search_runs(
        [client.get_run(registered["run_id"]).info.experiment_id],
        filter_string=f"attributes.run_id = '{registered['run_id']}'",
    )


def test_live_a_one_step_pipeline_runs_as_a_job_and_comes_back_a_record(tmp_path):
    import shutil

    root = Path(__file__).parents[1]
    shutil.copytree(root / "src" / "nbmill", tmp_path / "src" / "nbmill")  # the job's nbmill
    (tmp_path / "pipelines").mkdir()
    write_notebook(tmp_path / "notebooks" / "one.ipynb", "x = 1", "y = x + 1")
    (tmp_path / "pipelines" / "smoke.yml").write_text(
        "name: nbmill-smoke\nsteps:\n  one:\n    notebook: notebooks/one.ipynb\n"
    )
    (tmp_path / "environment.yml").write_text((root / "environment.yml").read_text())
    done = nbmill("run", "pipelines/smoke.yml", "--on", "azureml", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads(done.stdout)["record"]
    assert nbmill("verify", record, cwd=tmp_path).returncode == 0


def test_live_a_tiny_model_deploys_with_collection_and_gets_a_monitor_schedule(
    registered, workspace_mlflow, tmp_path
):
    from nbmill._hashing import sha256_file
    from nbmill.azure import endpoints, monitoring
    from nbmill.azure.settings import AzureSettings

    client = Workspace.from_environment().client()
    settings = AzureSettings(
        endpoint_instance_type="Standard_DS2_v2", alert_emails=["ops@example.com"],
        target_column="y",
    )  # fmt: skip
    identity = {"model": MODEL, "version": registered["version"]}
    csv = tmp_path / "train.csv"
    csv.write_text("x,y\n0.0,0.0\n1.0,2.0\n2.0,4.0\n")
    sample = {"input_data": {"columns": ["x"], "data": [[1.0]]}}
    try:
        deployed = endpoints.deploy(
            Workspace.from_environment(), ENDPOINT, registered["folder"], settings, identity,
            sample,
        )  # fmt: skip
        assert deployed["traffic"] == {deployed["deployment"]: 100}
        live = client.online_deployments.get(deployed["deployment"], ENDPOINT)
        assert set(live.data_collector.collections) == {"model_inputs", "model_outputs"}
        data = monitoring.training_data(
            MODEL, registered["version"], csv, sha256_file(csv), tmp_path / "training-data"
        )
        client.data.create_or_update(data)
        schedule = monitoring.schedule_entity(
            f"{ENDPOINT}-monitor", ENDPOINT, deployed["deployment"],
            f"azureml:{data.name}:{data.version}", monitoring.Thresholds(), settings,
        )  # fmt: skip
        created = client.schedules.begin_create_or_update(schedule).result()
        assert created.name == f"{ENDPOINT}-monitor"
        client.schedules.begin_disable(created.name).result()
        client.schedules.begin_delete(created.name).result()
    finally:
        client.online_endpoints.begin_delete(name=ENDPOINT).result()
