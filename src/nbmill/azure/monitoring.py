"""Azure ML model monitoring from the same thresholds as local monitoring (``monitor/
thresholds.py``): a MonitorSchedule with data drift, prediction drift and data quality signals
against the training data asset, on a cron, alerting by e-mail.

Two traps of the SDK are avoided here and checked by the tests: a threshold of 0.0 (the
data-quality default) is dropped where the SDK tests a threshold's truthiness, so every 0.0 is
checked to survive the YAML round trip; and entities are built anew for each call.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from nbmill.azure import sdk
from nbmill.azure.dry_run import DryRun, out_dir
from nbmill.azure.settings import AzureSettings, Workspace, settings_of
from nbmill.collection import INPUTS, OUTPUTS
from nbmill.errors import NbmillError
from nbmill.monitor.thresholds import Thresholds

QUALITY = ("null_value_rate", "data_type_error_rate", "out_of_bounds_rate")


def schedule_entity(
    name: str,
    endpoint: str,
    deployment: str,
    training_data: str,
    thresholds: Thresholds,
    settings: AzureSettings,
    task: str = "regression",
):
    """The MonitorSchedule of a deployment. ``training_data``: the training data asset, as
    ``azureml:NAME:VERSION`` (an MLTable)."""
    ml = sdk()
    from azure.ai.ml.entities import (
        AlertNotification,
        CronTrigger,
        DataDriftMetricThreshold,
        DataDriftSignal,
        DataQualityMetricThreshold,
        DataQualitySignal,
        MonitorDefinition,
        MonitoringTarget,
        MonitorSchedule,
        PredictionDriftMetricThreshold,
        PredictionDriftSignal,
        ProductionData,
        ReferenceData,
        ServerlessSparkCompute,
    )
    from azure.ai.ml.entities._monitoring.thresholds import (
        CategoricalDriftMetrics,
        DataQualityMetricsCategorical,
        DataQualityMetricsNumerical,
        NumericalDriftMetrics,
    )

    columns = {"target_column": settings.target_column} if settings.target_column else None

    def production(collection: str):
        # What the deployment's data collector wrote, as the data asset it registers for each
        # collection (<endpoint>-<deployment>-<collection>): Azure ML's REST contract requires
        # a drift signal's production data, so it is named rather than left to a default.
        return ProductionData(
            input_data=ml.Input(
                path=f"azureml:{endpoint}-{deployment}-{collection}:1", type="uri_folder"
            ),
            data_context=collection,
        )

    def reference():
        return ReferenceData(
            input_data=ml.Input(path=training_data, type="mltable"),
            data_context="training",
            data_column_names=columns,
        )

    def numerical():
        return NumericalDriftMetrics(
            normalized_wasserstein_distance=thresholds.normalized_wasserstein_distance
        )

    def categorical():
        return CategoricalDriftMetrics(jensen_shannon_distance=thresholds.jensen_shannon_distance)

    quality = {metric: getattr(thresholds, metric) for metric in QUALITY}
    signals = {
        "data-drift": DataDriftSignal(
            reference_data=reference(),
            production_data=production(INPUTS),
            features="all_features",
            metric_thresholds=DataDriftMetricThreshold(
                numerical=numerical(), categorical=categorical()
            ),
            alert_enabled=True,
        ),
        "prediction-drift": PredictionDriftSignal(
            reference_data=reference(),
            production_data=production(OUTPUTS),
            metric_thresholds=PredictionDriftMetricThreshold(
                numerical=numerical(), categorical=categorical()
            ),
            alert_enabled=True,
        ),
        "data-quality": DataQualitySignal(
            reference_data=reference(),
            production_data=production(INPUTS),
            features="all_features",
            metric_thresholds=DataQualityMetricThreshold(
                numerical=DataQualityMetricsNumerical(**quality),
                categorical=DataQualityMetricsCategorical(**quality),
            ),
            alert_enabled=True,
        ),
    }
    return MonitorSchedule(
        name=name,
        trigger=CronTrigger(expression=settings.monitor_cron),
        create_monitor=MonitorDefinition(
            compute=ServerlessSparkCompute(
                runtime_version=settings.monitor_spark_runtime,
                instance_type=settings.monitor_compute,
            ),
            monitoring_target=MonitoringTarget(
                ml_task=task, endpoint_deployment_id=f"azureml:{endpoint}:{deployment}"
            ),
            monitoring_signals=signals,
            alert_notification=AlertNotification(emails=list(settings.alert_emails))
            if settings.alert_emails
            else None,
        ),
        description=f"nbmill: drift, prediction drift and data quality of {endpoint}/{deployment}",
    )


def write(schedule, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = schedule._to_dict()
    path.write_text(yaml.safe_dump(json.loads(json.dumps(data)), sort_keys=False), "utf-8")
    return path


def validate(path: Path, thresholds: Thresholds | None = None) -> list[str]:
    """Load the schedule back with ``load_schedule``, check its signals, and that each
    threshold (0.0 too) is still what was asked for."""
    sdk()
    from azure.ai.ml.entities._load_functions import load_schedule  # not re-exported

    try:
        schedule = load_schedule(source=str(path))
    except Exception as exc:
        return [f"{Path(path).name}: {type(exc).__name__}: {exc}"]
    problems = []
    signals = schedule.create_monitor.monitoring_signals or {}
    for wanted in ("data-drift", "prediction-drift", "data-quality"):
        if wanted not in signals:
            problems.append(f"no {wanted} signal")
    if thresholds is not None and "data-quality" in signals:
        limits = signals["data-quality"].metric_thresholds
        for kind in ("numerical", "categorical"):
            for metric in QUALITY:
                got = getattr(getattr(limits, kind), metric, None)
                if got != getattr(thresholds, metric):
                    problems.append(
                        f"data-quality {kind} {metric}: {got!r}, not {getattr(thresholds, metric)}"
                    )
    if thresholds is not None and "data-drift" in signals:
        drift = signals["data-drift"].metric_thresholds
        got = drift.numerical.normalized_wasserstein_distance
        if got != thresholds.normalized_wasserstein_distance:
            problems.append(f"data-drift normalized_wasserstein_distance: {got!r}")
        got = drift.categorical.jensen_shannon_distance
        if got != thresholds.jensen_shannon_distance:
            problems.append(f"data-drift jensen_shannon_distance: {got!r}")
    problems += _lost_in_rest(schedule)
    return problems


REST_NAMES = {
    "normalizedWassersteinDistance": "normalized_wasserstein_distance",
    "jensenShannonDistance": "jensen_shannon_distance",
    "nullValueRate": "null_value_rate",
    "dataTypeErrorRate": "data_type_error_rate",
    "outOfBoundsRate": "out_of_bounds_rate",
}


def _lost_in_rest(schedule) -> list[str]:
    """Thresholds that the request the SDK would send no longer carries. Its drift metrics test
    a threshold's truthiness, so a threshold of 0.0 goes missing there."""
    sent = schedule._to_rest_object().as_dict()["properties"]["action"]["monitorDefinition"]
    problems = []
    for name, signal in schedule.create_monitor.monitoring_signals.items():
        carried = {
            (t.get("dataType"), REST_NAMES.get(t.get("metric"), t.get("metric")))
            for t in sent["signals"][name].get("metricThresholds", [])
            if t.get("threshold") is not None
        }
        limits = signal.metric_thresholds
        for kind, data_type in (("numerical", "Numerical"), ("categorical", "Categorical")):
            metrics = getattr(limits, kind, None)
            for metric in REST_NAMES.values():
                if (
                    getattr(metrics, metric, None) is not None
                    and (data_type, metric) not in carried
                ):
                    problems.append(
                        f"{name}: the SDK would not send the {kind} {metric} threshold "
                        f"({getattr(metrics, metric)}); it drops a drift threshold of 0.0: "
                        "give a small positive one"
                    )
    return problems


def pipeline_thresholds(
    project_dir: Path, pipeline: str | Path | None = None, params_file: str | None = None
) -> Thresholds:
    """The thresholds the monitoring pipeline's steps are given (``pipeline``, else
    nbmill.yml's ``monitoring_pipeline``): Azure ML's defaults unless changed. A params file
    is read for its ``azure:`` section only (``settings_of``): it is planned against the
    training pipeline, whose parameters the monitoring pipeline does not take."""
    from nbmill.monitor.thresholds import thresholds
    from nbmill.pipeline.runner import plan
    from nbmill.project.config import load_config

    pipeline = Path(pipeline) if pipeline else load_config(project_dir).monitoring_pipeline
    if pipeline is None:
        raise NbmillError(
            "monitor-schedule: which pipeline's thresholds? Pass --pipeline FILE, or set "
            "monitoring_pipeline in nbmill.yml"
        )
    planned = plan(pipeline, None, (), None, project_dir)
    given = [values["thresholds"] for values in planned.resolved.values() if "thresholds" in values]
    return thresholds(given[0] if given else {})


MLTABLE = """\
# The model's training data, as Azure ML model monitoring reads its reference data.
paths:
  - file: ./{file}
transformations:
  - read_delimited:
      delimiter: ","
      header: all_files_same_headers
"""


def training_data(name: str, version: str, csv: Path, sha256: str, folder: Path):
    """The training data asset ``NAME-training`` at the model's version: an MLTable folder
    (the CSV and its ``MLTable`` file) written into ``folder``, as an azure-ai-ml Data entity."""
    import shutil

    sdk()
    from azure.ai.ml.entities import Data

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(csv, folder / csv.name)
    (folder / "MLTable").write_text(MLTABLE.format(file=csv.name), encoding="utf-8")
    return Data(
        name=f"{name}-training",
        version=str(version),
        type="mltable",
        path=str(folder),
        description=f"nbmill: the training data of {name} version {version}",
        tags={"nbmill.data_sha256": sha256, "nbmill.model": f"{name}/{version}"},
    )


@dataclass(frozen=True)
class Monitored:
    """What a schedule monitors: ``model`` (NAME@ALIAS or NAME/VERSION) deployed on
    ``endpoint``, in the project ``project_dir``; the ``deployment`` (default: blue in a dry
    run, else the one taking the traffic); the ``training_data``: an Azure ML data asset
    (``azureml:...``), or a CSV file registered as ``NAME-training`` at the model's version
    (default: the file the model's run trained on: in its run folder, found by its sha256, else
    logged with its MLflow run); the monitoring
    ``pipeline`` whose thresholds apply (default: nbmill.yml's) and the ``params_file`` whose
    ``azure:`` section applies."""

    model: str
    endpoint: str
    project_dir: Path
    deployment: str | None = None
    training_data: str | None = None
    pipeline: str | Path | None = None
    params_file: str | None = None

    def reference(self, folder: Path):
        """The reference data: (its ``azureml:`` reference, the Data entity to register first
        or None for an asset given)."""
        from nbmill._hashing import sha256_file
        from nbmill.models import store as st
        from nbmill.models.lineage import LOGGED, training_data_file

        if self.training_data and self.training_data.startswith("azureml:"):
            return self.training_data, None
        store = st.Store.of(self.project_dir)
        ref, number = st.resolve(store, self.model)
        version = st.version(store, ref.name, number)
        csv = training_data_file(version, self.project_dir, folder, self.training_data)
        data = training_data(ref.name, number, csv, sha256_file(csv), folder)
        shutil.rmtree(Path(folder) / LOGGED, ignore_errors=True)  # copied into the asset
        return f"azureml:{data.name}:{data.version}", data

    def schedule(self, deployment: str, reference: str):
        from nbmill.models.ref import parse_ref

        limits = pipeline_thresholds(self.project_dir, self.pipeline)
        name = parse_ref(self.model).name
        entity = schedule_entity(
            f"{name}-monitor",  # one schedule per endpoint, moved to the live deployment
            self.endpoint,
            deployment,
            reference,
            limits,
            settings_of(self.params_file),
        )
        return entity, limits


def dry_run(target: Monitored, out: str | Path | None = None) -> DryRun:
    """The schedule of ``target`` written to ``out``/schedule.yml (default: the runs folder's
    dry-run/), and the training data asset it reads, ``data.yml`` and its MLTable folder
    ``training-data/``, when it is to be registered; each loaded back and checked."""
    from nbmill.project.config import load_config

    where = out_dir(out, load_config(target.project_dir).runs_dir)
    reference, data = target.reference(where / "training-data")
    problems = []
    if data is not None:
        data.dump(where / "data.yml")
        problems += _check_data(where / "data.yml")
    schedule, limits = target.schedule(target.deployment or "blue", reference)
    path = write(schedule, where / "schedule.yml")
    return DryRun("monitor schedule", path, problems + validate(path, limits))


def _check_data(path: Path) -> list[str]:
    """The data asset loads back with the SDK, and its MLTable names a file that is there."""
    ml = sdk()
    try:
        data = ml.load_data(source=str(path))
    except Exception as exc:
        return [f"{path.name}: {type(exc).__name__}: {exc}"]
    folder = (path.parent / data.path).resolve() if data.path else None
    mltable = yaml.safe_load((folder / "MLTable").read_text()) if folder else {}
    missing = [e["file"] for e in mltable.get("paths", []) if not (folder / e["file"]).is_file()]
    return [f"{path.name}: MLTable names {m}, which is not there" for m in missing]


def create_schedule(target: Monitored) -> str:
    """Create or update the schedule of ``target`` in the workspace the environment names;
    returns its name."""
    settings = settings_of(target.params_file)
    if not settings.alert_emails:
        raise NbmillError(
            f"monitor-schedule: {target.params_file or 'no params file'}: azure.alert_emails is "
            "empty, so a breach would alert no one (a schedule created by a service principal "
            "notifies nobody by itself); list who to e-mail there"
        )
    client = Workspace.from_environment().client()
    deployment = target.deployment
    if not deployment:
        traffic = client.online_endpoints.get(target.endpoint).traffic or {}
        if not any(traffic.values()):
            raise NbmillError(f"endpoint '{target.endpoint}' serves no traffic: deploy first")
        deployment = max(traffic, key=traffic.get)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="nbmill-training-data-") as folder:
        reference, data = target.reference(Path(folder))
        if data is not None:
            client.data.create_or_update(data)
        schedule, _ = target.schedule(deployment, reference)
        return client.schedules.begin_create_or_update(schedule).result().name
