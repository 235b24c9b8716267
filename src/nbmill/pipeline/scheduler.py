"""Executing a pipeline's steps: each as soon as what it needs is done, up to ``jobs`` at once.

The scheduler runs in the runner's thread and is the only one that changes the run record.
Worker threads execute steps (steps.py) and return results; a background thread renders HTML
pages and shuts kernels down off the critical path. A step whose key matches an earlier
execution is taken from the cache (cache.py) instead. On SIGINT or SIGTERM the running steps'
kernels are killed, what they wrote is archived, and nothing new starts.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from nbmill import tracking
from nbmill._hashing import hash_path
from nbmill._time import iso, utcnow
from nbmill.governance.events import Notifier
from nbmill.pipeline import cache, lifecycle
from nbmill.pipeline.execute import first_line, preload_runtime
from nbmill.pipeline.forkserver import ForkServer, why_not_available
from nbmill.pipeline.interrupts import Interrupts
from nbmill.pipeline.kernels import KernelStart, notebook_imports
from nbmill.pipeline.progress import Progress
from nbmill.pipeline.steps import StepJob, StepResult, execute_step
from nbmill.project.spec import Pipeline, Settings, Step
from nbmill.records import archive
from nbmill.records.record import RunRecord
from nbmill.records.render import preload as preload_rendering
from nbmill.records.render import render_html
from nbmill.records.runjson import DONE, MLFLOW_JSON, read_metrics

TICK_S = 0.2


def step_env(record: RunRecord, step: Step, project: Path, pipeline: Pipeline) -> dict[str, str]:
    """What a step's kernel learns from its environment (read by nbmill.tracking)."""
    return {
        tracking.ENV_RUN_ID: record.id,
        tracking.ENV_RUN_DIR: str(record.dir),
        tracking.ENV_STEP: step.name,
        tracking.ENV_PROJECT_DIR: str(project),
        tracking.ENV_PIPELINE: pipeline.name,
    }


def key_parts(
    step: Step, values: dict[str, Any], inputs: dict[str, str], environment: str, project: Path
) -> dict[str, Any]:
    return {
        "code": cache.code_digest(step.notebook),
        "params": {k: str(v) if isinstance(v, str) else v for k, v in values.items()},
        "inputs": inputs,
        "environment": environment,
        "modules": cache.project_modules(step.notebook, project),
    }


class Scheduler:
    def __init__(
        self,
        pipeline: Pipeline,
        resolved: dict[str, dict[str, Any]],
        settings: dict[str, Settings],
        record: RunRecord,
        project: Path,
        progress: Progress,
        notifier: Notifier,
        interrupts: Interrupts,
        jobs: int = 1,
        warm: bool = True,
        force: set[str] | None = None,
        server: ForkServer | None = None,
    ):
        self.pipeline, self.resolved, self.settings = pipeline, resolved, settings
        self.record, self.project, self.progress = record, project, progress
        self.notifier, self.interrupts = notifier, interrupts
        self.jobs, self.warm, self.force = max(1, jobs), warm, force or set()
        self.cache = cache.Cache(record.dir.parent, pipeline.name)
        self.stop = threading.Event()
        self.kernels: dict[str, KernelStart] = {}  # started ahead, not yet taken
        self.active: dict[str, KernelStart] = {}  # the kernel of each running step
        self.server = server
        self.fork = warm and why_not_available() is None
        self.running: dict[Future, str] = {}
        self.pages: dict[str, Future] = {}
        self.failed = False
        self.runtime_loaded = False
        self.mlflow_loading = False

    # --- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        total = len(self.pipeline.order)
        pool = ThreadPoolExecutor(self.jobs, thread_name_prefix="nbmill-step")
        self.background = ThreadPoolExecutor(1, thread_name_prefix="nbmill-background")
        try:
            while True:
                if self.interrupts.signum and not self.stop.is_set():
                    self._interrupt()
                if not self.stop.is_set() and not self.failed:
                    self._start_ready(pool, total)
                if not self.running:
                    break
                finished, _ = wait(list(self.running), timeout=TICK_S, return_when=FIRST_COMPLETED)
                for future in finished:
                    self._finish(self.running.pop(future), _result(future), total)
        finally:
            for kernel in self.kernels.values():
                self.background.submit(kernel.shutdown)
            pool.shutdown(wait=True)
            self.background.shutdown(wait=True)  # pages written before the files are hashed
            if self.server is not None:
                self.server.close()
            self._record_pages()

    def _ready(self) -> list[str]:
        steps = self.record.data["steps"]
        return [
            name
            for name in self.pipeline.order
            if steps[name]["status"] == "pending"
            and all(steps[need]["status"] in DONE for need in self.pipeline.steps[name].needs)
        ]

    def _start_ready(self, pool: ThreadPoolExecutor, total: int) -> None:
        progressed = True
        while progressed and len(self.running) < self.jobs:
            progressed = False
            for name in self._ready():
                if len(self.running) >= self.jobs:
                    break
                if self._from_cache(name, total):
                    progressed = True  # its dependants may be ready now
                    continue
                self._submit(pool, name, total)
        self._start_ahead()

    def _index(self, name: str) -> int:
        return self.pipeline.order.index(name) + 1

    # --- cache ---------------------------------------------------------------------------

    def _parts(self, name: str) -> dict[str, Any]:
        step = self.pipeline.steps[name]
        inputs = {}
        for rel in step.inputs.values():
            if (self.record.dir / rel).exists():
                inputs.update(hash_path(self.record.dir / rel, self.record.dir))
        fingerprint = self.record.data["environment"]["fingerprint"]
        return key_parts(step, self.resolved[name], inputs, fingerprint, self.project)

    def _from_cache(self, name: str, total: int) -> bool:
        """Take the step from the cache if it may be; True if it was."""
        entry = self.record.step(name)
        if not self.settings[name].cache or name in self.force:
            return False
        parts = self._parts(name)
        entry["key"], entry["key_parts"] = cache.key_of(parts), parts
        hit, _ = self.cache.lookup(name, parts, self.record.dir.parent)
        if hit is None:
            return False
        now = iso(utcnow())
        entry.update(
            status="cached",
            started_at=now,
            ended_at=now,
            duration_s=0.0,
            inputs=parts["inputs"],
            outputs=cache.copy_outputs(hit, self.record.dir),
            cached_from={
                "run_id": hit.run_id,
                "notebook": f"{hit.run_id}/{hit.entry['executed']}"
                if hit.entry.get("executed")
                else None,
                "html": f"{hit.run_id}/{hit.entry['html']}" if hit.entry.get("html") else None,
                "mlflow_run_id": _mlflow_run(hit.run_dir),
            },
        )
        metrics = hit.entry.get("metrics") or {}
        if metrics:
            entry["metrics"] = metrics
            self.record.data["metrics"].update({f"{name}.{k}": v for k, v in metrics.items()})
        self.record.save()
        self.progress.step_finished(self._index(name), total, name, "cached", 0.0)
        self._announce(name, "completed")
        return True

    # --- kernels -------------------------------------------------------------------------

    def _server(self) -> ForkServer | None:
        if not self.fork:
            return None
        if self.server is None:
            preload = []
            for name in self.pipeline.order:
                if self.record.step(name)["status"] not in DONE:
                    preload += notebook_imports(self.pipeline.steps[name].notebook)
            self.server = ForkServer(preload)
        return self.server

    def _kernel(self, name: str) -> KernelStart:
        step = self.pipeline.steps[name]
        env = step_env(self.record, step, self.project, self.pipeline)
        return KernelStart(step.notebook, env, warm=self.warm, server=self._server())

    def _start_ahead(self) -> None:
        """Start kernels for the steps next in line (whose needs are running or done), unless
        they may well come from the cache."""
        if not self.warm:
            return
        steps = self.record.data["steps"]
        for name in self.pipeline.order:
            if len(self.kernels) >= self.jobs:
                return
            if name in self.kernels or steps[name]["status"] != "pending":
                continue
            if not all(
                steps[need]["status"] in (*DONE, "running")
                for need in self.pipeline.steps[name].needs
            ):
                continue
            if self.settings[name].cache and name not in self.force and self._cached_before(name):
                continue
            self.kernels[name] = self._kernel(name)

    def _cached_before(self, name: str) -> bool:
        return self.cache.has_entries(name)

    # --- steps ---------------------------------------------------------------------------

    def _submit(self, pool: ThreadPoolExecutor, name: str, total: int) -> None:
        kernel = self._take_kernel(name)  # the template starts importing while this one does
        if not self.runtime_loaded:  # before the first worker thread imports anything
            preload_runtime()
            self.background.submit(preload_rendering)  # compiles nbconvert's templates
            self.runtime_loaded = True
        step = self.pipeline.steps[name]
        entry = self.record.step(name)
        if "key_parts" not in entry:  # recorded for every step: --explain and --resume use it
            parts = self._parts(name)
            entry["key"], entry["key_parts"] = cache.key_of(parts), parts
        entry.update(status="running", started_at=iso(utcnow()))
        self.record.save()
        self.progress.step_started(self._index(name), total, name)
        job = StepJob(
            step,
            self.resolved[name],
            self.settings[name],
            self.record.dir,
            self.record.notebook_path(name),
            step_env(self.record, step, self.project, self.pipeline),
        )
        future = pool.submit(
            execute_step,
            job,
            lambda: self._kernel_for_retry(name),
            kernel,
            self.stop,
        )
        self.running[future] = name

    def _take_kernel(self, name: str) -> KernelStart:
        kernel = self.kernels.pop(name, None) or self._kernel(name)
        self.active[name] = kernel
        return kernel

    def _kernel_for_retry(self, name: str) -> KernelStart:
        """A new kernel for another attempt (called in the step's worker thread)."""
        kernel = self._kernel(name)
        self.active[name] = kernel
        if self.stop.is_set():
            kernel.kill()
        return kernel

    def _finish(self, name: str, result: StepResult, total: int) -> None:
        entry = self.record.step(name)
        entry.update(
            status=result.status,
            started_at=result.started_at,
            ended_at=result.ended_at,
            duration_s=result.duration_s,
            attempts=result.attempts,
            inputs=result.inputs,
        )
        if result.status == "completed":
            entry["outputs"] = result.outputs
        if result.error is not None:
            entry["error"] = result.error
            if self.record.data["error"] is None:
                self.record.data["error"] = {"step": name, **result.error}
        self.active.pop(name, None)
        if result.kernel is not None:
            self.background.submit(result.kernel.shutdown)
        executed = self.record.notebook_path(name)
        if executed.exists():
            entry["executed"] = executed.relative_to(self.record.dir).as_posix()
            self.pages[name] = self.background.submit(
                render_html, executed, self.record.html_path(name)
            )
        metrics = read_metrics(self.record.dir, name)
        if metrics:
            entry["metrics"] = metrics
            self.record.data["metrics"].update({f"{name}.{k}": v for k, v in metrics.items()})
        if not self.mlflow_loading and (self.record.dir / MLFLOW_JSON).exists():
            # The run's end logs the record to MLflow: open its store now, on the other thread.
            self.mlflow_loading = True
            self.background.submit(archive.warm, self.record)
        if result.status == "completed" and self.settings[name].cache:
            self.cache.remember(name, entry["key"], self.record.id, entry["key_parts"])
        if result.status not in DONE:
            self.failed = True
        self.record.save()
        self.progress.step_finished(
            self._index(name), total, name, result.status, result.duration_s
        )
        self._announce(name, "completed" if result.status in DONE else "failed")

    def _announce(self, name: str, outcome: str) -> None:
        self.notifier.emit(
            f"nbmill.step.{outcome}",
            lifecycle.subject(self.record, name),
            lifecycle.step_finished(self.record, name),
        )

    def _interrupt(self) -> None:
        """Stop: kill every running step's kernel (its notebook is archived as it got)."""
        self.stop.set()
        for kernel in [*self.kernels.values(), *list(self.active.values())]:
            kernel.kill()

    def _record_pages(self) -> None:
        """Each rendered page on its step; a page that failed to render says why, never lost."""
        for name, page in self.pages.items():
            entry = self.record.step(name)
            error = page.exception()
            if error is None:
                entry["html"] = self.record.html_path(name).relative_to(self.record.dir).as_posix()
            else:
                entry["html_error"] = f"{type(error).__name__}: {first_line(str(error))}"


def _result(future: Future) -> StepResult:
    """The worker's result; a bug in the worker fails the step and says what it was."""
    error = future.exception()
    if error is None:
        return future.result()
    now = iso(utcnow())
    message = f"{type(error).__name__} in the runner: {first_line(str(error))}"
    return StepResult("failed", now, now, error={"type": "RunnerError", "message": message})


def _mlflow_run(run_dir: Path) -> str | None:
    import json

    path = run_dir / MLFLOW_JSON
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8")).get("run_id")


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
