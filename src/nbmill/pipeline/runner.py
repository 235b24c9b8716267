"""Plan and execute a pipeline: each step's notebook through papermill, in a fresh kernel.

``run`` reads as the story of one run: load and check everything (nothing executes if any
parameter is wrong), open the record, then for each step in order: execute, check its
outputs, record. A failed step stops the run; its partial notebook is archived with the error.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from nbmill import tracking
from nbmill._fs import write_atomic
from nbmill._hashing import hash_path, sha256_file
from nbmill._time import iso, utcnow
from nbmill.errors import RunError
from nbmill.governance.events import Notifier
from nbmill.pipeline import lifecycle
from nbmill.pipeline.execute import StepFailure, execute_notebook, first_line, preload_runtime
from nbmill.pipeline.kernels import KernelStart
from nbmill.pipeline.progress import Progress, SilentProgress
from nbmill.project.config import load_config
from nbmill.project.params import ParamsFile, load_params_file, resolve_params
from nbmill.project.spec import Pipeline, Step, find_project_dir, load_pipeline
from nbmill.records.archive import log_to_mlflow
from nbmill.records.record import RunRecord
from nbmill.records.render import render_html
from nbmill.records.report import run_index_html
from nbmill.records.runjson import INDEX_HTML, read_metrics


def run(
    pipeline_path: str | Path,
    params_path: str | Path | None = None,
    overrides: Iterable[str] = (),
    reason: str | None = None,
    runs_dir: str | Path | None = None,
    project_dir: str | Path | None = None,
    progress: Progress | None = None,
    warm: bool = True,
    notifier: Notifier | None = None,
) -> RunRecord:
    """Run a pipeline end to end; returns the completed record or raises RunError.

    ``warm`` starts each step's fresh kernel while the step before it runs (see kernels.py).
    Lifecycle events go to the ledger and the configured sinks (see governance/events.py).
    """
    project = Path(project_dir).resolve() if project_dir else find_project_dir(Path(pipeline_path))
    pipeline = load_pipeline(pipeline_path, project)
    params_file = load_params_file(params_path) if params_path else None
    config = load_config(project, Path(runs_dir) if runs_dir else None)
    config = config.with_params_file(params_file)
    resolved = resolve_params(pipeline, params_file, overrides)
    notifier = notifier or Notifier(config)
    record = open_record(pipeline, params_file, resolved, reason, project, config.runs_dir)
    notifier.emit("nbmill.run.started", lifecycle.subject(record), lifecycle.run_started(record))
    try:
        execute(pipeline, resolved, record, project, progress or SilentProgress(), warm, notifier)
    finally:
        kind = "completed" if record.status == "completed" else "failed"
        notifier.emit(
            f"nbmill.run.{kind}", lifecycle.subject(record), lifecycle.run_finished(record)
        )
        notifier.close()
    if record.status != "completed":
        error = record.data["error"]
        raise RunError(
            f"run {record.id} failed at step '{error['step']}': {error['type']}: "
            f"{error['message']}\n  record: {record.dir}",
            run_dir=record.dir,
        )
    return record


def open_record(
    pipeline: Pipeline,
    params_file: ParamsFile | None,
    resolved: dict[str, dict[str, Any]],
    reason: str | None,
    project: Path,
    runs_dir: Path,
) -> RunRecord:
    from nbmill.records.provenance import provenance

    steps = {
        name: {
            "status": "pending",
            "notebook": _rel(pipeline.steps[name].notebook, project),
            "params": resolved[name],
        }
        for name in pipeline.order
    }
    return RunRecord.create(
        Path(runs_dir),
        {
            "pipeline": {
                "name": pipeline.name,
                "file": _rel(pipeline.path.resolve(), project),
                "sha256": sha256_file(pipeline.path),
            },
            "params_file": (
                {
                    "file": _rel(params_file.path.resolve(), project),
                    "sha256": sha256_file(params_file.path),
                }
                if params_file and params_file.path
                else None
            ),
            "started_at": iso(utcnow()),
            "ended_at": None,
            "duration_s": None,
            **provenance(project, reason),
            "steps": steps,
            "metrics": {},
            "error": None,
        },
    )


def execute(
    pipeline: Pipeline,
    resolved: dict[str, dict[str, Any]],
    record: RunRecord,
    project: Path,
    progress: Progress,
    warm: bool = True,
    notifier: Notifier | None = None,
) -> None:
    order = pipeline.order
    preload_runtime()
    clock = time.monotonic()
    kernels: dict[str, KernelStart] = {}
    # One background thread renders each step's HTML while the next one runs. It only writes the
    # page; what it found is applied to the record here, in this thread.
    renderer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nbmill-render")
    pages: dict[str, Future] = {}

    def start_kernel(name: str) -> None:
        if warm and name not in kernels:
            step = pipeline.steps[name]
            kernels[name] = KernelStart(step.notebook, step_env(record, step, project, pipeline))

    try:
        for index, name in enumerate(order, start=1):
            start_kernel(name)
            if index < len(order):
                start_kernel(order[index])  # the next step's kernel starts while this one runs
            progress.step_started(index, len(order), name)
            status = run_step(
                pipeline.steps[name],
                resolved[name],
                record,
                project,
                pipeline,
                kernels.pop(name, None),
            )
            if record.notebook_path(name).exists():
                pages[name] = renderer.submit(
                    render_html, record.notebook_path(name), record.html_path(name)
                )
            progress.step_finished(index, len(order), name, status, record.step(name)["duration_s"])
            if notifier is not None:
                notifier.emit(
                    f"nbmill.step.{status}",
                    lifecycle.subject(record, name),
                    lifecycle.step_finished(record, name),
                )
            if status != "completed":
                break
    except BaseException as exc:  # Ctrl-C or a bug: never leave the record saying "running"
        _fail(record, "(runner)", StepFailure(type(exc).__name__, str(exc) or "interrupted"))
        raise
    finally:
        for kernel in kernels.values():
            kernel.shutdown()
        renderer.shutdown(wait=True)  # every HTML page is written before the files are hashed
        _record_pages(record, pages)
        _finish(record, clock)


def _record_pages(record: RunRecord, pages: dict[str, Future]) -> None:
    """Each rendered page on its step; a page that failed to render says why, never lost."""
    for name, page in pages.items():
        entry = record.step(name)
        error = page.exception()
        if error is None:
            entry["html"] = record.html_path(name).relative_to(record.dir).as_posix()
        else:
            entry["html_error"] = f"{type(error).__name__}: {first_line(str(error))}"


def _finish(record: RunRecord, clock: float) -> None:
    """The end of every run, however it ended: status, times, report, hashes, MLflow."""
    for step in record.data["steps"].values():
        if step["status"] == "pending":
            step["status"] = "skipped"
    if record.status == "running":
        record.data["status"] = "completed"
    record.data["ended_at"] = iso(utcnow())
    record.data["duration_s"] = round(time.monotonic() - clock, 3)
    write_atomic(record.dir / INDEX_HTML, run_index_html(record.data))
    record.data["files"] = record.hash_files()
    record.save()
    try:
        log_to_mlflow(record)
    except Exception as exc:  # the record stands without it; say so, never hide it
        print(
            f"warning: could not log the record to MLflow: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )


def step_env(record: RunRecord, step: Step, project: Path, pipeline: Pipeline) -> dict[str, str]:
    """What a step's kernel learns from its environment (read by nbmill.tracking)."""
    return {
        tracking.ENV_RUN_ID: record.id,
        tracking.ENV_RUN_DIR: str(record.dir),
        tracking.ENV_STEP: step.name,
        tracking.ENV_PROJECT_DIR: str(project),
        tracking.ENV_PIPELINE: pipeline.name,
    }


def run_step(
    step: Step,
    values: dict[str, Any],
    record: RunRecord,
    project: Path,
    pipeline: Pipeline,
    kernel: KernelStart | None = None,
) -> str:
    """Execute one step and record it; returns its final status."""
    entry = record.step(step.name)
    entry.update(status="running", started_at=iso(utcnow()))
    record.save()
    clock = time.monotonic()
    try:
        entry["inputs"] = _hash_io(step.inputs, record, step, "input")
        env = step_env(record, step, project, pipeline)
        execute_notebook(step, values, record.dir, record.notebook_path(step.name), env, kernel)
        entry["outputs"] = _hash_io(step.outputs, record, step, "output")
        entry["status"] = "completed"
    except StepFailure as failure:
        _fail(record, step.name, failure)
    finally:
        entry["ended_at"] = iso(utcnow())
        entry["duration_s"] = round(time.monotonic() - clock, 3)
        executed = record.notebook_path(step.name)
        if executed.exists():
            entry["executed"] = executed.relative_to(record.dir).as_posix()
        metrics = read_metrics(record.dir, step.name)
        if metrics:
            entry["metrics"] = metrics
            record.data["metrics"].update({f"{step.name}.{k}": v for k, v in metrics.items()})
        record.save()
    return entry["status"]


def _hash_io(declared: dict[str, str], record: RunRecord, step: Step, kind: str) -> dict[str, str]:
    hashes: dict[str, str] = {}
    for name, rel in declared.items():
        path = record.dir / rel
        if not path.exists() or (path.is_dir() and not any(path.iterdir())):
            raise StepFailure(
                f"Missing{kind.capitalize()}",
                f"step '{step.name}' declares {kind} '{name}' at {rel}, but "
                + ("nothing is there" if not path.exists() else "the folder is empty")
                + (" after the notebook ran" if kind == "output" else ""),
            )
        hashes.update(hash_path(path, record.dir))
    return hashes


def _fail(record: RunRecord, step: str, failure: StepFailure) -> None:
    if step in record.data["steps"]:
        record.step(step)["status"] = "failed"
        record.step(step)["error"] = failure.as_dict()
    record.data["status"] = "failed"
    record.data["error"] = {"step": step, **failure.as_dict()}


def _rel(path: Path, project: Path) -> str:
    try:
        return path.relative_to(project).as_posix()
    except ValueError:
        return str(path)
