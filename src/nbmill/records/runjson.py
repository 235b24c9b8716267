"""The run folder's layout and ``run.json``, its one owner: a typed model, read and written here.

A run folder holds::

    runs/<run-id>/
      run.json               what ran, with which values, by whom, why, and every file's sha256
      index.html             the run's report
      notebooks/<step>.ipynb executed notebooks (a failed one shows its error)
      html/<step>.html       the same, rendered for reviewers
      metrics/<step>.json    metrics the notebooks recorded
      products/<step>.json   what a step's code named as what it produced, by kind (a model
                             folder, a gate decision, a package): how lineage and the run page
                             find them, whatever a project calls its folders
      environment.txt        the installed distributions, one ``name==version`` a line
      mlflow.json            the MLflow run the notebooks logged to
      <outputs>              whatever the steps wrote: their declared outputs, and any file a
                             step wrote without declaring it (run.json lists those per step)

Every ``run.json`` nbmill writes is validated against :class:`RunDoc` first, and every one it
reads is validated on the way in, so a field the code and the format disagree on fails loudly,
naming the file and the field. In a running pipeline the record is a ``RunDoc`` in memory,
changed only through ``records.record.RunRecord``'s methods.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nbmill.errors import NbmillError

RUN_JSON = "run.json"
INDEX_HTML = "index.html"
ENVIRONMENT_TXT = "environment.txt"
MLFLOW_JSON = "mlflow.json"
NOTEBOOKS, HTML, METRICS, PRODUCTS = "notebooks", "html", "metrics", "products"
SCRATCH = "scratch"  # runs/scratch: where a notebook opened on its own writes
SCHEMA_VERSION = 1
# What is logged beside the MLflow run: the record without the pipeline's own outputs.
RECORD_ARTIFACTS = (RUN_JSON, INDEX_HTML, ENVIRONMENT_TXT, HTML, NOTEBOOKS, METRICS, PRODUCTS)
# The kinds of product nbmill's own code records (``tracking.record_product``).
MODEL, GATE, PACKAGE = "model", "gate", "package"
# The files nbmill itself writes in a run folder; everything else a step wrote.
RECORD_FILES = (*RECORD_ARTIFACTS, MLFLOW_JSON)

RunStatus = Literal["running", "completed", "failed", "interrupted"]
StepStatus = Literal[
    "pending", "running", "completed", "cached", "failed", "timed_out", "interrupted", "skipped"
]
DONE = ("completed", "cached")  # a step whose outputs are there


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PipelineRef(_Model):
    name: str
    file: str
    sha256: str


class FileRef(_Model):
    file: str
    sha256: str


class Git(_Model):
    commit: str | None
    dirty: bool | None
    branch: str | None


class Environment(_Model):
    fingerprint: str  # the distributions the run depends on: what the cache keys on
    packages: int | None = None
    installed: str | None = None  # everything installed, test tools included
    distributions: int
    file: str
    executable: str


class Runner(_Model):
    """The ``nbmill run`` process: a run still "running" whose process is gone was abandoned."""

    pid: int
    host: str
    kernels: str  # "fork" or "plain"
    kernels_why: str | None = None  # why not forked
    jobs: int = 1
    on: str = "local"  # or "azureml": each step an Azure ML job, assembled here afterwards
    job: str | None = None  # the Azure ML pipeline job's name
    only: list[str] | None = None  # nbmill run --only: these steps and what they need


class StepError(_Model):
    type: str
    message: str
    cell: int | None = None
    exit_code: int | None = None  # of the kernel process; negative: killed by that signal
    timeout_s: float | None = None


class CachedFrom(_Model):
    run_id: str
    notebook: str | None = None  # relative to the runs folder
    html: str | None = None
    mlflow_run_id: str | None = None


class RunFailure(StepError):
    """The error that failed the run: a step's, or the runner's own (step ``(runner)``)."""

    step: str


class StepDoc(_Model):
    status: StepStatus
    notebook: str
    params: dict[str, Any]
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float | None = None
    inputs: dict[str, str] | None = None
    outputs: dict[str, str] | None = None
    # Files it wrote (new or changed while it ran) that its outputs do not declare; a step
    # with any is never taken from the cache. With steps at once, a file another running step
    # wrote undeclared is listed on both: the safe side.
    undeclared: dict[str, str] | None = None
    executed: str | None = None
    html: str | None = None
    html_error: str | None = None
    metrics: dict[str, float] | None = None
    products: dict[str, str] | None = None  # kind -> path in the run folder
    error: StepError | None = None
    attempts: int | None = None
    key: str | None = None  # the cache key
    key_parts: dict[str, Any] | None = None
    cached_from: CachedFrom | None = None


class RunDoc(_Model):
    schema_version: int = Field(SCHEMA_VERSION, alias="schema")
    id: str
    status: RunStatus
    pipeline: PipelineRef
    params_file: FileRef | None
    started_at: str
    ended_at: str | None
    duration_s: float | None
    who: str
    why: str
    git: Git
    host: str
    python: str
    platform: str
    ci: dict[str, str]
    steps: dict[str, StepDoc]
    metrics: dict[str, float]
    error: RunFailure | None
    environment: Environment
    runner: Runner | None = None
    resumed: list[dict[str, str]] | None = None
    reproduces: str | None = None  # the run this one re-executed (nbmill reproduce)
    files: dict[str, str] | None = None


def validate(data: dict[str, Any], where: Path | str = RUN_JSON) -> dict[str, Any]:
    """``data`` itself if it is a valid run.json, else NbmillError naming the first bad field."""
    try:
        RunDoc.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "(top level)"
        raise NbmillError(
            f"{where}: not a valid run record: {field}: {error['msg']} "
            f"({exc.error_count()} problem(s))"
        ) from None
    return data


def read(run_dir: Path) -> dict[str, Any]:
    """run.json of one run folder, validated; NbmillError naming the file and what to do."""
    path = Path(run_dir) / RUN_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NbmillError(f"{run_dir}: no {RUN_JSON} here; is this a run folder?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NbmillError(
            f"{path}: not valid JSON ({exc}); restore it from the run's archived copy, or move "
            "the folder out of the runs folder"
        ) from None
    if not isinstance(data, dict) or "id" not in data:
        raise NbmillError(f"{path}: not a run record (no 'id'); is this a run folder?")
    return validate(data, path)


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


def is_record_file(rel: str) -> bool:
    """Whether the run folder's file at ``rel`` (POSIX) is one nbmill writes, or hidden."""
    top = rel.split("/", 1)[0]
    return top in RECORD_FILES or any(part.startswith(".") for part in rel.split("/"))


def run_dirs(runs_dir: Path) -> list[Path]:
    """Run folders (those holding a run.json, not ``scratch`` or hidden ones), newest first."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    found = [
        child
        for child in runs_dir.iterdir()
        if child.is_dir()
        and child.name != SCRATCH
        and not child.name.startswith(".")
        and (child / RUN_JSON).is_file()
    ]
    return sorted(found, key=lambda p: p.name, reverse=True)


def notebook_path(run_dir: Path, step: str) -> Path:
    return Path(run_dir) / NOTEBOOKS / f"{step}.ipynb"


def html_path(run_dir: Path, step: str) -> Path:
    return Path(run_dir) / HTML / f"{step}.html"


def metrics_path(run_dir: Path, step: str) -> Path:
    return Path(run_dir) / METRICS / f"{step}.json"


def products_path(run_dir: Path, step: str) -> Path:
    return Path(run_dir) / PRODUCTS / f"{step}.json"


def read_products(run_dir: Path, step: str) -> dict[str, str]:
    """What a step recorded with ``tracking.record_product``: kind -> path ({} if nothing)."""
    path = products_path(run_dir, step)
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def products(run: dict[str, Any], kind: str) -> list[str]:
    """The paths in the run folder that the run's steps recorded as ``kind``, in step order."""
    found = [(entry.get("products") or {}).get(kind) for entry in run.get("steps", {}).values()]
    return [rel for rel in found if rel]


def read_metrics(run_dir: Path, step: str) -> dict[str, float]:
    """What a step recorded with ``tracking.log_metrics`` ({} if nothing)."""
    path = metrics_path(run_dir, step)
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))
