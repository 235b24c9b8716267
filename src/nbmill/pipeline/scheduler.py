"""Executing a pipeline's steps: each as soon as what it needs is done, up to ``jobs`` at once.

The scheduler runs in the runner's thread; it changes the run record only through the record's
own transitions (records/record.py). Worker threads execute steps (steps.py) and return
results; a background thread renders HTML pages and shuts kernels down off the critical path.
A step whose key matches an earlier execution is taken from the cache (cache.py) instead. On
SIGINT or SIGTERM the running steps' kernels are killed, what they wrote is archived, and
nothing new starts.
"""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from nbmill._time import iso, utcnow
from nbmill.context import StepContext
from nbmill.governance.events import Notifier
from nbmill.pipeline import cache, lifecycle
from nbmill.pipeline.execute import first_line, preload_runtime
from nbmill.pipeline.forkserver import ForkServer, why_not_available
from nbmill.pipeline.interrupts import Interrupts
from nbmill.pipeline.kernels import KernelStart, preload_list, remember_imports
from nbmill.pipeline.plan import Plan
from nbmill.pipeline.progress import Progress
from nbmill.pipeline.steps import StepJob, StepResult, execute_step
from nbmill.project.spec import ancestors
from nbmill.records import archive
from nbmill.records.record import RunRecord
from nbmill.records.render import preload as preload_rendering
from nbmill.records.render import render_html
from nbmill.records.runjson import DONE, MLFLOW_JSON, read_metrics, read_products

TICK_S = 0.2


def step_env(record: RunRecord, step: str, p: Plan) -> dict[str, str]:
    """What a step's kernel learns from its environment (read by nbmill.context)."""
    return StepContext(record.id, record.dir, step, p.project, p.pipeline.name).environment()


class Scheduler:
    def __init__(
        self,
        plan: Plan,
        record: RunRecord,
        progress: Progress,
        notifier: Notifier,
        interrupts: Interrupts,
        jobs: int = 1,
        warm: bool = True,
        force: set[str] | None = None,
        server: ForkServer | None = None,
    ):
        self.plan, self.pipeline = plan, plan.pipeline
        self.record, self.progress = record, progress
        self.notifier, self.interrupts = notifier, interrupts
        self.jobs, self.warm, self.force = max(1, jobs), warm, force or set()
        self.cache = cache.Cache(record.dir.parent, self.pipeline.name)
        self.upstream = {name: ancestors(self.pipeline, name) for name in self.pipeline.order}
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
        pool = ThreadPoolExecutor(self.jobs, thread_name_prefix="nbmill-step")
        self.background = ThreadPoolExecutor(1, thread_name_prefix="nbmill-background")
        try:
            while True:
                if self.interrupts.signum and not self.stop.is_set():
                    self._interrupt()
                if not self.stop.is_set() and not self.failed:
                    self._start_ready(pool)
                if not self.running:
                    break
                finished, _ = wait(list(self.running), timeout=TICK_S, return_when=FIRST_COMPLETED)
                for future in finished:
                    self._finish(self.running.pop(future), _result(future))
        finally:
            if self.running:  # leaving on an error of the runner's own: stop the steps
                self._interrupt()
            for kernel in self.kernels.values():
                self.background.submit(kernel.shutdown)
            pool.shutdown(wait=True)
            self.background.shutdown(wait=True)  # pages written before the files are hashed
            if self.server is not None:
                self.server.close()
            self._record_pages()

    def _ready(self) -> list[str]:
        steps = self.record.doc.steps
        return [
            name
            for name in self.pipeline.order
            if steps[name].status == "pending"
            and all(steps[need].status in DONE for need in self.pipeline.steps[name].needs)
        ]

    def _start_ready(self, pool: ThreadPoolExecutor) -> None:
        progressed = True
        while progressed and len(self.running) < self.jobs:
            progressed = False
            for name in self._ready():
                if len(self.running) >= self.jobs:
                    break
                if self._from_cache(name):
                    progressed = True  # its dependants may be ready now
                    continue
                self._submit(pool, name)
        self._start_ahead()

    def _index(self, name: str) -> int:
        return self.pipeline.order.index(name) + 1

    # --- cache ---------------------------------------------------------------------------

    def _key(self, name: str) -> dict[str, Any]:
        """The step's key parts, recorded on its entry; inputs from what the steps before it
        wrote in this run."""
        entries = self.record.doc.steps
        upstream = {
            a: {**(entries[a].outputs or {}), **(entries[a].undeclared or {})}
            for a in self.upstream[name]
        }
        fingerprint = self.record.doc.environment.fingerprint
        parts = self.plan.key_parts(name, upstream, fingerprint)
        self.record.key_step(name, cache.key_of(parts), parts)
        return parts

    def _from_cache(self, name: str) -> bool:
        """Take the step from the cache if it may be; True if it was."""
        if not self.plan.settings[name].cache or name in self.force:
            return False
        parts = self._key(name)
        hit, _ = self.cache.lookup(name, parts, self.record.dir.parent)
        if hit is None:
            return False
        cached_from = {
            "run_id": hit.run_id,
            "notebook": f"{hit.run_id}/{hit.entry['executed']}"
            if hit.entry.get("executed")
            else None,
            "html": f"{hit.run_id}/{hit.entry['html']}" if hit.entry.get("html") else None,
            "mlflow_run_id": _mlflow_run(hit.run_dir),
        }
        self.record.cache_step(
            name,
            inputs=parts["inputs"],
            outputs=cache.copy_outputs(hit, name, self.record.dir),
            cached_from=cached_from,
            metrics=hit.entry.get("metrics") or {},
            products=hit.entry.get("products"),
        )
        total = len(self.pipeline.order)
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
                if self.record.step(name).status not in DONE:
                    preload += preload_list(self.pipeline.steps[name].notebook)
            self.server = ForkServer(preload)
        return self.server

    def _kernel(self, name: str, plain: bool = False) -> KernelStart:
        """A kernel for the step, with its environment and folder given to it (never set in
        this process): forked from the template, or (``plain``) started the plain way."""
        return KernelStart(
            self.pipeline.steps[name].notebook,
            step_env(self.record, name, self.plan),
            warm=self.warm and not plain,
            server=None if plain else self._server(),
        )

    def _start_ahead(self) -> None:
        """Start kernels for the steps next in line (whose needs are running or done), unless
        they may well come from the cache."""
        if not self.warm:
            return
        steps = self.record.doc.steps
        for name in self.pipeline.order:
            if len(self.kernels) >= self.jobs:
                return
            if name in self.kernels or steps[name].status != "pending":
                continue
            if not all(
                steps[need].status in (*DONE, "running") for need in self.pipeline.steps[name].needs
            ):
                continue
            if (
                self.plan.settings[name].cache
                and name not in self.force
                and self.cache.has_entries(name)
            ):
                continue
            self.kernels[name] = self._kernel(name)

    # --- steps ---------------------------------------------------------------------------

    def _submit(self, pool: ThreadPoolExecutor, name: str) -> None:
        kernel = self._take_kernel(name)  # the template starts importing while this one does
        if not self.runtime_loaded:  # before the first worker thread imports anything
            preload_runtime()
            self.background.submit(preload_rendering)  # compiles nbconvert's templates
            self.runtime_loaded = True
        if self.record.step(name).key_parts is None:  # recorded for every step
            self._key(name)
        self.record.start_step(name)
        self.progress.step_started(self._index(name), len(self.pipeline.order), name)
        job = StepJob(
            self.pipeline.steps[name],
            self.plan.parameters(name, self.record.dir),
            self.plan.settings[name],
            self.record.dir,
            self.record.notebook_path(name),
        )
        future = pool.submit(
            execute_step, job, lambda plain: self._kernel_for_retry(name, plain), kernel, self.stop
        )
        self.running[future] = name

    def _take_kernel(self, name: str) -> KernelStart:
        kernel = self.kernels.pop(name, None) or self._kernel(name)
        self.active[name] = kernel
        return kernel

    def _kernel_for_retry(self, name: str, plain: bool) -> KernelStart:
        """A new kernel for another attempt (called in the step's worker thread)."""
        kernel = self._kernel(name, plain)
        self.active[name] = kernel
        if self.stop.is_set():
            kernel.kill()
        return kernel

    def _finish(self, name: str, result: StepResult) -> None:
        self.active.pop(name, None)
        if result.kernel is not None:
            learn = result.status == "completed"
            self.background.submit(self._end_kernel, name, result.kernel, learn)
        executed = self.record.notebook_path(name)
        if executed.exists():
            self.pages[name] = self.background.submit(
                render_html, executed, self.record.html_path(name)
            )
        undeclared = self._undeclared(name, result.undeclared)
        self.record.finish_step(
            name,
            result.status,
            started_at=result.started_at,
            ended_at=result.ended_at,
            duration_s=result.duration_s,
            attempts=result.attempts,
            inputs=result.inputs,
            outputs=result.outputs,
            undeclared=undeclared,
            error=result.error,
            executed=executed.relative_to(self.record.dir).as_posix()
            if executed.exists()
            else None,
            metrics=read_metrics(self.record.dir, name),
            products=read_products(self.record.dir, name),
        )
        if not self.mlflow_loading and (self.record.dir / MLFLOW_JSON).exists():
            # The run's end logs the record to MLflow: open its store now, on the other thread.
            self.mlflow_loading = True
            self.background.submit(archive.warm, self.record)
        entry = self.record.step(name)
        if result.status == "completed" and self.plan.settings[name].cache:
            if undeclared:
                self.cache.refuse(name, entry.key, self.record.id, entry.key_parts, [*undeclared])
            else:
                self.cache.remember(name, entry.key, self.record.id, entry.key_parts)
        if result.status not in DONE:
            self.failed = True
        total = len(self.pipeline.order)
        self.progress.step_finished(
            self._index(name), total, name, result.status, result.duration_s
        )
        self._announce(name, "completed" if result.status in DONE else "failed")

    def _end_kernel(self, name: str, kernel: KernelStart, learn: bool) -> None:
        """Shut the step's kernel down; after a success, first note what it had imported, for
        the next run's template (kernels.learned_imports)."""
        if learn:
            modules = kernel.modules()
            if modules:
                remember_imports(self.pipeline.steps[name].notebook, modules)
        kernel.shutdown()

    def _undeclared(self, name: str, written: dict[str, str]) -> dict[str, str]:
        """What the step wrote undeclared, less the declared outputs of steps that may have
        run at the same time (theirs, not its)."""
        others = [
            self.pipeline.steps[s].outputs
            for s in self.pipeline.order
            if s != name and s not in self.upstream[name]
        ]
        return {rel: d for rel, d in written.items() if not any(o.covers(rel) for o in others)}

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
        pages, errors = {}, {}
        for name, page in self.pages.items():
            error = page.exception()
            if error is None:
                pages[name] = self.record.html_path(name).relative_to(self.record.dir).as_posix()
            else:
                errors[name] = f"{type(error).__name__}: {first_line(str(error))}"
        if pages or errors:
            self.record.pages_rendered(pages, errors)


def _result(future: Future) -> StepResult:
    """The worker's result; a bug in the worker fails the step and says what it was."""
    error = future.exception()
    if error is None:
        return future.result()
    now = iso(utcnow())
    message = f"{type(error).__name__} in the runner: {first_line(str(error))}"
    return StepResult("failed", now, now, error={"type": "RunnerError", "message": message})


def _mlflow_run(run_dir: Path) -> str | None:
    path = run_dir / MLFLOW_JSON
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8")).get("run_id")


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
