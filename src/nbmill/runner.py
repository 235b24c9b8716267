"""Plan and execute a pipeline: each step's notebook through papermill, in a fresh kernel.

``run`` reads as the story of one run: load and check everything (nothing executes if any
parameter is wrong), open the record, then for each step in order: execute, check its
outputs, record. A failed step stops the run; its partial notebook is archived with the error.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from nbmill import tracking
from nbmill.config import load_config
from nbmill.errors import RunError
from nbmill.events import Notifier
from nbmill.kernels import KERNEL, KernelStart
from nbmill.notebook import declared_parameters
from nbmill.params import RUN_DIR, ParamsFile, load_params_file, resolve_params
from nbmill.record import (
    RunRecord,
    hash_path,
    hash_tree,
    iso,
    provenance,
    render_html,
    sha256_file,
    utcnow,
    write_atomic,
)
from nbmill.report import run_index_html
from nbmill.secret import install_papermill_translator
from nbmill.spec import Pipeline, Step, find_project_dir, load_pipeline


class Progress(Protocol):
    def step_started(self, index: int, total: int, step: str) -> None: ...

    def step_finished(
        self, index: int, total: int, step: str, status: str, seconds: float
    ) -> None: ...


class SilentProgress:
    def step_started(self, index: int, total: int, step: str) -> None:
        pass

    def step_finished(self, index: int, total: int, step: str, status: str, seconds: float) -> None:
        pass


@dataclass
class StepFailure(Exception):
    """Why a step did not complete (a cell raised, an output is missing, the kernel died)."""

    kind: str
    message: str
    cell: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "message": self.message, "cell": self.cell}


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
    Lifecycle events go to the ledger and the configured sinks (see events.py).
    """
    project = Path(project_dir).resolve() if project_dir else find_project_dir(Path(pipeline_path))
    config = load_config(project, Path(runs_dir) if runs_dir else None)
    pipeline = load_pipeline(pipeline_path, project)
    params_file = load_params_file(params_path) if params_path else None
    if params_file and params_file.sections.get("notify"):
        config = config.with_sinks(params_file.sections["notify"], str(params_file.path))
    resolved = resolve_params(pipeline, params_file, overrides)
    notifier = notifier or Notifier(config)
    record = open_record(pipeline, params_file, resolved, reason, project, config.runs_dir)
    notifier.emit("nbmill.run.started", _subject(record), _run_started(record))
    try:
        execute(pipeline, resolved, record, project, progress or SilentProgress(), warm, notifier)
    finally:
        kind = "completed" if record.status == "completed" else "failed"
        notifier.emit(f"nbmill.run.{kind}", _subject(record), _run_finished(record))
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
    runs = Path(runs_dir)
    started = utcnow()
    steps = {
        name: {
            "status": "pending",
            "notebook": _rel(pipeline.steps[name].notebook, project),
            "params": resolved[name],
        }
        for name in pipeline.order
    }
    return RunRecord.create(
        runs,
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
            "started_at": iso(started),
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
    _import_runtime()
    clock = time.monotonic()
    kernels: dict[str, KernelStart] = {}
    # One background thread: it imports MLflow's client (for the end of the run) while the first
    # step runs, then renders each step's HTML while the next one runs.
    renderer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nbmill-background")
    renderer.submit(importlib.import_module, "mlflow.tracking")

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
                renderer,
            )
            progress.step_finished(
                index, len(order), name, status, record.data["steps"][name]["duration_s"]
            )
            if notifier is not None:
                notifier.emit(
                    f"nbmill.step.{status}",
                    f"{_subject(record)}/steps/{name}",
                    _step_finished(record, name),
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
        for step in record.data["steps"].values():
            if step["status"] == "pending":
                step["status"] = "skipped"
        if record.status == "running":
            record.data["status"] = "completed"
        record.data["ended_at"] = iso(utcnow())
        record.data["duration_s"] = round(time.monotonic() - clock, 3)
        write_atomic(record.dir / "index.html", run_index_html(record.data))
        record.data["files"] = hash_tree(record.dir)
        record.save()
        try:
            _log_to_mlflow(record)
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
    renderer: ThreadPoolExecutor | None = None,
) -> str:
    """Execute one step and record it; returns its final status."""
    entry = record.data["steps"][step.name]
    entry.update(status="running", started_at=iso(utcnow()))
    record.save()
    clock = time.monotonic()
    try:
        entry["inputs"] = _hash_io(step.inputs, record, step, "input")
        env = step_env(record, step, project, pipeline)
        _execute_notebook(step, values, record, env, kernel)
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
            entry["html"] = record.html_path(step.name).relative_to(record.dir).as_posix()
            if renderer is None:
                _render(executed, record.html_path(step.name), entry)
            else:  # rendered on the other core while the next step runs
                renderer.submit(_render, executed, record.html_path(step.name), entry)
        metrics = _read_metrics(record, step.name)
        if metrics:
            entry["metrics"] = metrics
            record.data["metrics"].update({f"{step.name}.{k}": v for k, v in metrics.items()})
        record.save()
    return entry["status"]


def _execute_notebook(
    step: Step,
    values: dict[str, Any],
    record: RunRecord,
    env: dict[str, str],
    kernel: KernelStart | None,
) -> None:
    import papermill
    from papermill.exceptions import PapermillExecutionError
    from traitlets.config import Config

    install_papermill_translator()  # ${env:NAME} values are injected as os.environ lookups
    paths = {name: str(record.dir / rel) for name, rel in {**step.inputs, **step.outputs}.items()}
    if RUN_DIR in declared_parameters(step.notebook):
        paths[RUN_DIR] = str(record.dir)
    for rel in step.outputs.values():
        (record.dir / rel).parent.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = dict(
        parameters={**values, **paths},
        kernel_name=KERNEL,
        cwd=str(step.notebook.parent),
        progress_bar=False,
        log_output=False,
    )
    output = str(record.notebook_path(step.name))
    try:
        km = kernel.take() if kernel is not None else None
        if km is not None:  # started ahead with this step's environment and folder
            papermill.execute_notebook(str(step.notebook), output, km=km, **options)
        else:  # papermill starts the kernel: it inherits this process's environment, so set it
            with _environment(env), tempfile.TemporaryDirectory(prefix="nbmill-kernel-") as sockets:
                ipc = {"transport": "ipc", "ip": f"{sockets}/kernel"}  # no TCP port
                papermill.execute_notebook(
                    str(step.notebook), output, config=Config({"KernelManager": ipc}), **options
                )
    except PapermillExecutionError as exc:
        raise StepFailure(exc.ename, _first_line(exc.evalue), cell=exc.exec_count) from None
    except Exception as exc:  # the kernel died, timed out, or would not start
        raise StepFailure(type(exc).__name__, _first_line(str(exc))) from None
    finally:
        if kernel is not None:
            kernel.shutdown()


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


def _render(executed: Path, target: Path, entry: dict[str, Any]) -> None:
    """Render a step's HTML; a failure is recorded on the step, never lost in a thread."""
    try:
        render_html(executed, target)
    except Exception as exc:
        entry.pop("html", None)
        entry["html_error"] = f"{type(exc).__name__}: {_first_line(str(exc))}"


def _read_metrics(record: RunRecord, step: str) -> dict[str, float]:
    path = record.metrics_path(step)
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def _fail(record: RunRecord, step: str, failure: StepFailure) -> None:
    if step in record.data["steps"]:
        record.data["steps"][step]["status"] = "failed"
        record.data["steps"][step]["error"] = failure.as_dict()
    record.data["status"] = "failed"
    record.data["error"] = {"step": step, **failure.as_dict()}


RECORD_ARTIFACTS = ("run.json", "index.html", "environment.txt", "html", "notebooks", "metrics")


def _import_runtime() -> None:
    """Import, in this thread and before any other starts, what the kernel and HTML threads use.

    Two threads importing modules that depend on each other can see one of them half
    initialised; so the threads started later import nothing new.
    """
    import jupyter_client.provisioning  # noqa: F401
    import papermill  # noqa: F401
    from jupyter_client.kernelspec import KernelSpecManager
    from nbconvert import HTMLExporter
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    KernelSpecManager().get_kernel_spec(KERNEL)  # imports ipykernel's kernelspec
    sample = new_notebook(
        cells=[new_markdown_cell("# x"), new_code_cell("x = 1")],
        metadata={"language_info": {"name": "python"}},
    )
    HTMLExporter(template_name="lab").from_notebook_node(sample)  # its lazy imports, ~0.3 s


def _log_to_mlflow(record: RunRecord) -> None:
    """Put the record beside the MLflow run (the UI then shows the rendered notebooks); a failed
    nbmill run must not look finished in MLflow either."""
    path = record.dir / tracking.MLFLOW_FILE
    if not path.exists():
        return
    info = json.loads(path.read_text(encoding="utf-8"))
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=info["tracking_uri"])
    run_id = info["run_id"]
    client.set_tag(run_id, "nbmill.status", record.status)
    for name in RECORD_ARTIFACTS:
        item = record.dir / name
        if item.is_dir():
            client.log_artifacts(run_id, str(item), artifact_path=f"nbmill-record/{name}")
        elif item.is_file():
            client.log_artifact(run_id, str(item), artifact_path="nbmill-record")
    if record.status != "completed":
        client.set_terminated(run_id, status="FAILED")


def _subject(record: RunRecord) -> str:
    return f"runs/{record.id}"


def _run_started(record: RunRecord) -> dict[str, Any]:
    data = record.data
    return {
        "run_id": record.id,
        "run_dir": str(record.dir),
        "pipeline": data["pipeline"]["name"],
        "who": data["who"],
        "why": data["why"],
        "commit": data["git"]["commit"],
        "params": {name: step["params"] for name, step in data["steps"].items()},
    }


def _step_finished(record: RunRecord, step: str) -> dict[str, Any]:
    entry = record.data["steps"][step]
    return {
        "run_id": record.id,
        "step": step,
        "status": entry["status"],
        "who": record.data["who"],
        "why": record.data["why"],
        "duration_s": entry.get("duration_s"),
        "outputs": entry.get("outputs", {}),
        "error": {"step": step, **entry["error"]} if entry.get("error") else None,
    }


def _run_finished(record: RunRecord) -> dict[str, Any]:
    data = record.data
    return {
        "run_id": record.id,
        "run_dir": str(record.dir),
        "status": data["status"],
        "pipeline": data["pipeline"]["name"],
        "who": data["who"],
        "why": data["why"],
        "commit": data["git"]["commit"],
        "metrics": data["metrics"],
        "error": data["error"],
        "files": data.get("files", {}),
        "run_json_sha256": sha256_file(record.dir / "run.json"),
    }


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set variables for the kernel this process is about to start, then restore them."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _first_line(text: str) -> str:
    text = (text or "").strip()
    return text.splitlines()[0] if text else ""


def _rel(path: Path, project: Path) -> str:
    try:
        return path.relative_to(project).as_posix()
    except ValueError:
        return str(path)
