"""What notebooks call: the step's context, recorded metrics, and the MLflow run of this run.

Inside ``nbmill run`` the runner tells a step who it is through environment variables; opened
on its own in JupyterLab the same calls write to ``runs/scratch`` so a notebook runs unchanged.
MLflow is imported only by ``mlflow_run`` (it takes seconds to import).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from nbmill.errors import NbmillError
from nbmill.record import write_atomic
from nbmill.spec import find_project_dir

ENV_RUN_ID = "NBMILL_RUN_ID"
ENV_RUN_DIR = "NBMILL_RUN_DIR"
ENV_STEP = "NBMILL_STEP"
ENV_PROJECT_DIR = "NBMILL_PROJECT_DIR"
ENV_PIPELINE = "NBMILL_PIPELINE"
RUN_ID_TAG = "nbmill.run_id"
MLFLOW_FILE = "mlflow.json"


@dataclass(frozen=True)
class StepContext:
    run_id: str
    run_dir: Path
    step: str
    project_dir: Path
    pipeline: str

    @property
    def interactive(self) -> bool:
        return self.run_id == "scratch"


def context() -> StepContext:
    """The current step, from the runner's environment, or a scratch context outside a run."""
    env = os.environ
    if env.get(ENV_RUN_DIR):
        return StepContext(
            run_id=env[ENV_RUN_ID],
            run_dir=Path(env[ENV_RUN_DIR]),
            step=env[ENV_STEP],
            project_dir=Path(env[ENV_PROJECT_DIR]),
            pipeline=env.get(ENV_PIPELINE, "scratch"),
        )
    project = find_project_dir(Path.cwd())
    return StepContext("scratch", project / "runs" / "scratch", "interactive", project, "scratch")


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
    path = ctx.run_dir / "metrics" / f"{ctx.step}.json"
    recorded = json.loads(path.read_text()) if path.exists() else {}
    recorded.update(clean)
    write_atomic(path, json.dumps(recorded, indent=2, sort_keys=True) + "\n")
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None and mlflow.active_run() is not None:
        mlflow.log_metrics({f"{ctx.step}.{k}": v for k, v in clean.items()})
    return clean


def tracking_uri(project_dir: Path) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else a sqlite file in the project (no server)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(project_dir) / 'mlflow.db'}"


def artifact_root(uri: str, experiment: str) -> str | None:
    """Where a new experiment keeps artifacts: beside a sqlite store, else the server decides.

    Without this, MLflow would put them in ./mlruns relative to the kernel's folder.
    """
    if uri.startswith("sqlite:///"):
        store = Path(uri.removeprefix("sqlite:///")).parent
        return (store / "mlartifacts" / experiment).resolve().as_uri()
    return None


def mlflow_run(experiment: str | None = None):
    """Start, or resume, the one MLflow run of this nbmill run, tagged with its id.

    Returns mlflow's ActiveRun; every step of a run logs to the same MLflow run.
    """
    import mlflow

    ctx = context()
    uri = tracking_uri(ctx.project_dir)
    mlflow.set_tracking_uri(uri)
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
    mlflow.set_tag(f"nbmill.step.{ctx.step}", "ran")
    write_atomic(
        ctx.run_dir / MLFLOW_FILE,
        json.dumps(
            {
                "tracking_uri": mlflow.get_tracking_uri(),
                "experiment_id": experiment_id,
                "experiment": name,
                "run_id": active.info.run_id,
            },
            indent=2,
        )
        + "\n",
    )
    return active


def pinned_requirements(*distributions: str) -> list[str]:
    """``name==version`` for each installed distribution: explicit, so MLflow infers nothing."""
    return [f"{name}=={metadata.version(name)}" for name in distributions]
