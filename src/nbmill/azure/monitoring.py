"""Azure ML model monitoring from the same thresholds as local monitoring (``monitor/
thresholds.py``): a MonitorSchedule with data drift, prediction drift and data quality signals
against the training data asset, on a cron, alerting by e-mail.

Two traps of the SDK are avoided here and checked by the tests: a threshold of 0.0 (the
data-quality default) is dropped where the SDK tests a threshold's truthiness, so every 0.0 is
checked to survive the YAML round trip; and entities are built anew for each call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from nbmill.azure import sdk
from nbmill.azure.dry_run import DryRun, out_dir
from nbmill.azure.settings import AzureSettings, Workspace, settings_of
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
        ReferenceData,
        ServerlessSparkCompute,
    )
    from azure.ai.ml.entities._monitoring.thresholds import (
        CategoricalDriftMetrics,
        DataQualityMetricsCategorical,
        DataQualityMetricsNumerical,
        NumericalDriftMetrics,
    )

    def reference():
        return ReferenceData(
            input_data=ml.Input(path=training_data, type="mltable"), data_context="training"
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
            features="all_features",
            metric_thresholds=DataDriftMetricThreshold(
                numerical=numerical(), categorical=categorical()
            ),
            alert_enabled=True,
        ),
        "prediction-drift": PredictionDriftSignal(
            reference_data=reference(),
            metric_thresholds=PredictionDriftMetricThreshold(
                numerical=numerical(), categorical=categorical()
            ),
            alert_enabled=True,
        ),
        "data-quality": DataQualitySignal(
            reference_data=reference(),
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
    nbmill.yml's ``monitoring_pipeline``): Azure ML's defaults unless changed."""
    from nbmill.monitor.thresholds import thresholds
    from nbmill.pipeline.runner import plan
    from nbmill.project.config import load_config

    pipeline = Path(pipeline) if pipeline else load_config(project_dir).monitoring_pipeline
    if pipeline is None:
        raise NbmillError(
            "monitor-schedule: which pipeline's thresholds? Pass --pipeline FILE, or set "
            "monitoring_pipeline in nbmill.yml"
        )
    planned = plan(pipeline, params_file, (), None, project_dir)
    given = [values["thresholds"] for values in planned.resolved.values() if "thresholds" in values]
    return thresholds(given[0] if given else {})


@dataclass(frozen=True)
class Monitored:
    """What a schedule monitors: ``model`` (NAME@ALIAS) deployed on ``endpoint``, in the
    project ``project_dir``; the ``deployment`` (default: blue in a dry run, else the one taking
    the traffic), the ``training_data`` asset (default: ``azureml:NAME-training@latest``), the
    monitoring ``pipeline`` whose thresholds apply (default: nbmill.yml's) and the
    ``params_file`` whose ``azure:`` section applies."""

    model: str
    endpoint: str
    project_dir: Path
    deployment: str | None = None
    training_data: str | None = None
    pipeline: str | Path | None = None
    params_file: str | None = None

    def schedule(self, deployment: str):
        from nbmill.models.ref import parse_ref

        limits = pipeline_thresholds(self.project_dir, self.pipeline, self.params_file)
        name = parse_ref(self.model).name
        entity = schedule_entity(
            f"{name}-monitor",  # one schedule per endpoint, moved to the live deployment
            self.endpoint,
            deployment,
            self.training_data or f"azureml:{name}-training@latest",
            limits,
            settings_of(self.params_file),
        )
        return entity, limits


def dry_run(target: Monitored, out: str | Path | None = None) -> DryRun:
    """The schedule of ``target``, written to ``out``/schedule.yml (default: the runs folder's
    dry-run/) and checked."""
    from nbmill.project.config import load_config

    schedule, limits = target.schedule(target.deployment or "blue")
    where = out_dir(out, load_config(target.project_dir).runs_dir) / "schedule.yml"
    path = write(schedule, where)
    return DryRun("monitor schedule", path, validate(path, limits))


def create_schedule(target: Monitored) -> str:
    """Create or update the schedule of ``target`` in the workspace the environment names;
    returns its name."""
    client = Workspace.from_environment().client()
    deployment = target.deployment
    if not deployment:
        traffic = client.online_endpoints.get(target.endpoint).traffic or {}
        if not any(traffic.values()):
            raise NbmillError(f"endpoint '{target.endpoint}' serves no traffic: deploy first")
        deployment = max(traffic, key=traffic.get)
    schedule, _ = target.schedule(deployment)
    return client.schedules.begin_create_or_update(schedule).result().name
