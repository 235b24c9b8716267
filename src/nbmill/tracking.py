"""What notebooks call: the step's context, recorded metrics and products, and the MLflow run
of this run.

Inside ``nbmill run`` the runner tells a step who it is through environment variables
(``nbmill.context``); opened on its own in JupyterLab the same calls write to
``runs/scratch`` so a notebook runs unchanged. MLflow is imported only by ``mlflow_run`` (it
takes seconds to import).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nbmill._fs import write_json
from nbmill.context import StepContext, context
from nbmill.errors import NbmillError
from nbmill.project.config import artifact_root, tracking_uri
from nbmill.records.runjson import (
    MLFLOW_JSON,
    metrics_path,
    products_path,
    read_metrics,
    read_products,
)

RUN_ID_TAG = "nbmill.run_id"
JOB_RUN_ID = "MLFLOW_RUN_ID"  # set by Azure ML in every job: the MLflow run the job logs to

# MLflow's download progress bars would be written into every executed notebook: noise for a
# reviewer, and a difference between any two runs.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

__all__ = [
    "StepContext",
    "context",
    "log_metrics",
    "mlflow_run",
    "record_product",
    "set_mlflow_tag",
]


def log_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Record numeric metrics for this step: in the run record, and in MLflow if a run is open."""
    clean: dict[str, float] = {}
    for name, value in metrics.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise NbmillError(f"metric '{name}': expected a number, got {value!r}") from None
        if not math.isfinite(number):
            raise NbmillError(f"metric '{name}': {number} is not a finite number")
        clean[str(name)] = number
    ctx = context()
    recorded = {**read_metrics(ctx.run_dir, ctx.step), **clean}
    write_json(metrics_path(ctx.run_dir, ctx.step), recorded, sort_keys=True)
    mlflow = _active_mlflow()
    if mlflow is not None:
        mlflow.log_metrics({f"{ctx.step}.{k}": v for k, v in clean.items()})
    return clean


def record_product(kind: str, path: str | Path) -> None:
    """Note that this step produced ``path`` (a file or folder in the run folder) as its
    ``kind``: ``model``, ``gate``, ``package``, or a kind of the project's own. Lineage, the run
    page and reproductions find what a run produced by kind, whatever the project calls its
    folders. A path outside the run folder is not part of the record and is not noted."""
    ctx = context()
    try:
        rel = Path(path).resolve().relative_to(ctx.run_dir.resolve()).as_posix()
    except ValueError:
        return
    recorded = {**read_products(ctx.run_dir, ctx.step), str(kind): rel}
    write_json(products_path(ctx.run_dir, ctx.step), recorded, sort_keys=True)


def _active_mlflow():
    """The mlflow module if this process imported it and has a run open, else None."""
    mlflow = sys.modules.get("mlflow")
    return mlflow if mlflow is not None and mlflow.active_run() is not None else None


def set_mlflow_tag(key: str, value: str) -> None:
    """Tag the open MLflow run, if there is one (nothing otherwise)."""
    mlflow = _active_mlflow()
    if mlflow is not None:
        mlflow.set_tag(key, value)


def mlflow_run(experiment: str | None = None):
    """Start, or resume, the one MLflow run of this nbmill run, tagged with its id.

    Returns mlflow's ActiveRun; every step of a run logs to the same MLflow run.
    """
    import mlflow

    ctx = context()
    uri = tracking_uri(ctx.project_dir)
    mlflow.set_tracking_uri(uri)
    if os.environ.get(JOB_RUN_ID):  # an Azure ML job: its own MLflow run, in its experiment
        return _adopted(ctx)
    name = experiment or ctx.pipeline
    found = mlflow.get_experiment_by_name(name)
    if found is None:
        experiment_id = mlflow.create_experiment(name, artifact_location=artifact_root(uri, name))
    else:
        experiment_id = found.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    if mlflow.active_run() is not None:
        mlflow.end_run()
    existing = None
    if not ctx.interactive:
        runs = mlflow.search_runs(
            experiment_ids=[experiment_id],
            filter_string=f"tags.`{RUN_ID_TAG}` = '{ctx.run_id}'",
            output_format="list",
        )
        existing = runs[0].info.run_id if runs else None
    if existing:
        active = mlflow.start_run(run_id=existing)
    else:
        active = mlflow.start_run(
            run_name=ctx.run_id,
            tags={RUN_ID_TAG: ctx.run_id, "nbmill.pipeline": ctx.pipeline},
        )
    return _started(ctx, active, name)


def _adopted(ctx):
    """The MLflow run the job runs in (Azure ML sets ``MLFLOW_RUN_ID`` in every job, and
    MLflow refuses any other run in that job), tagged as nbmill's own runs are."""
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.end_run()
    active = mlflow.start_run(run_id=os.environ[JOB_RUN_ID])
    mlflow.set_tags({RUN_ID_TAG: ctx.run_id, "nbmill.pipeline": ctx.pipeline})
    experiment = mlflow.get_experiment(active.info.experiment_id)
    return _started(ctx, active, experiment.name if experiment else None)


def _started(ctx, active, experiment: str | None):
    """Tag the step on the run and record which MLflow run this step logged to."""
    import mlflow

    mlflow.set_tag(f"nbmill.step.{ctx.step}", "ran")
    write_json(
        ctx.run_dir / MLFLOW_JSON,
        {
            "tracking_uri": mlflow.get_tracking_uri(),
            "experiment_id": active.info.experiment_id,
            "experiment": experiment,
            "run_id": active.info.run_id,
        },
    )
    return active
