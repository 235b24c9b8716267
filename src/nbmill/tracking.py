"""What notebooks call: the step's context, recorded metrics, and the MLflow run of this run.

Inside ``nbmill run`` the runner tells a step who it is through environment variables; opened
on its own in JupyterLab the same calls write to ``runs/scratch`` so a notebook runs unchanged.
MLflow is imported only by ``mlflow_run`` (it takes seconds to import).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from nbmill._fs import write_json
from nbmill.errors import NbmillError
from nbmill.project.spec import find_project_dir
from nbmill.records.runjson import (
    MLFLOW_JSON,
    RUN_JSON,
    SCRATCH,
    metrics_path,
    products_path,
    read,
    read_metrics,
    read_products,
)

ENV_RUN_ID = "NBMILL_RUN_ID"
ENV_RUN_DIR = "NBMILL_RUN_DIR"
ENV_STEP = "NBMILL_STEP"
ENV_PROJECT_DIR = "NBMILL_PROJECT_DIR"
ENV_PIPELINE = "NBMILL_PIPELINE"
RUN_ID_TAG = "nbmill.run_id"

# MLflow's download progress bars would be written into every executed notebook: noise for a
# reviewer, and a difference between any two runs.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@dataclass(frozen=True)
class StepContext:
    run_id: str
    run_dir: Path
    step: str
    project_dir: Path
    pipeline: str

    @property
    def interactive(self) -> bool:
        return self.run_id == SCRATCH


def context() -> StepContext:
    """The current step, from the runner's environment, or a scratch context outside a run."""
    env = os.environ
    if env.get(ENV_RUN_DIR):
        return StepContext(
            run_id=env[ENV_RUN_ID],
            run_dir=Path(env[ENV_RUN_DIR]),
            step=env[ENV_STEP],
            project_dir=Path(env[ENV_PROJECT_DIR]),
            pipeline=env.get(ENV_PIPELINE, SCRATCH),
        )
    project = find_project_dir(Path.cwd())
    return StepContext(SCRATCH, project / "runs" / SCRATCH, "interactive", project, SCRATCH)


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
    write_json(
        ctx.run_dir / MLFLOW_JSON,
        {
            "tracking_uri": mlflow.get_tracking_uri(),
            "experiment_id": experiment_id,
            "experiment": name,
            "run_id": active.info.run_id,
        },
    )
    return active


def run_json(ctx: StepContext | None = None) -> dict[str, Any]:
    """This run's run.json, or {} outside a run."""
    ctx = ctx or context()
    if ctx.interactive or not (ctx.run_dir / RUN_JSON).exists():
        return {}
    return read(ctx.run_dir)


def runs_dir(project_dir: Path | None = None) -> Path:
    """Where this run's folder lives (so --runs-dir is respected), else the project's."""
    from nbmill.project.config import load_config

    ctx = context()
    if not ctx.interactive:
        return ctx.run_dir.parent
    return load_config(Path(project_dir or ctx.project_dir)).runs_dir


def notifier(project_dir: Path | None = None):
    """A Notifier on the ledger (and sinks) of the run this code runs in, else the project's."""
    from nbmill.governance.events import Notifier
    from nbmill.project.config import load_config
    from nbmill.project.params import load_params_file

    ctx = context()
    project = Path(project_dir or ctx.project_dir).resolve()
    if ctx.interactive or ctx.project_dir.resolve() != project:
        return Notifier(load_config(project))
    config = load_config(project, ctx.run_dir.parent)  # as the runner saw it: --runs-dir
    params_file = (run_json(ctx).get("params_file") or {}).get("file")
    if params_file and (project / params_file).is_file():
        config = config.with_params_file(load_params_file(project / params_file))
    return Notifier(config)


@contextmanager
def emitter(project_dir: Path | None = None, given=None) -> Iterator[Any]:
    """``given`` if a Notifier was passed in, else one of ``notifier()``, closed afterwards."""
    if given is not None:
        yield given
        return
    own = notifier(project_dir)
    try:
        yield own
    finally:
        own.close()


def pinned_requirements(*distributions: str) -> list[str]:
    """``name==version`` for each installed distribution: explicit, so MLflow infers nothing."""
    return [f"{name}=={metadata.version(name)}" for name in distributions]
