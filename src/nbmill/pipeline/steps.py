"""One step, in a worker thread: its kernel, its notebook, its time limit and its retries.

``execute_step`` changes nothing in the run record, nor anything else shared by the process
(its working directory, its environment): it returns a ``StepResult`` that the scheduler applies
in its own thread. A cell that raises fails the step at once; a kernel that dies (its process
exited, or was killed, as the OOM killer does) is retried up to ``retries`` times with a new
kernel; a step over its ``timeout`` has its kernel killed and is ``timed_out``. A kernel that
could not be started ahead (the template refused it) is replaced by one started the plain way.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbmill._hashing import hash_path, sha256_file
from nbmill._time import iso, utcnow
from nbmill.pipeline.execute import StepFailure, execute_notebook, first_line
from nbmill.pipeline.kernels import KernelStart
from nbmill.pipeline.writes import listing, written_since
from nbmill.project.spec import Files, Settings, Step

DEAD_KERNEL = "DeadKernelError"


@dataclass
class StepResult:
    status: str
    started_at: str
    ended_at: str = ""
    duration_s: float = 0.0
    attempts: int = 1
    inputs: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    # files written while the step ran that its outputs do not declare (path -> sha256)
    undeclared: dict[str, str] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    kernel: KernelStart | None = None  # the last one, for the runner to shut down


def kernel_death(exit_code: int | None) -> str:
    """How a kernel process ended, in words, with a hint where one helps."""
    if exit_code is None:
        return "the kernel died (its exit code is unknown)"
    if exit_code < 0:
        number = -exit_code
        name = signal.Signals(number).name if number in signal.valid_signals() else "?"
        hint = ": out of memory?" if number == signal.SIGKILL else ""
        return f"the kernel was killed by signal {number} ({name}){hint}"
    return f"the kernel exited with code {exit_code}"


def hash_io(declared: Files, run_dir: Path, step: str, kind: str) -> dict[str, str]:
    """sha256 of each declared input or output; StepFailure if one is missing or empty."""
    names = {rel: name for name, rel in declared.params.items()}
    hashes: dict[str, str] = {}
    for rel in declared.paths:
        path = run_dir / rel
        if not path.exists() or (path.is_dir() and not any(path.iterdir())):
            what = f"'{names[rel]}' at {rel}" if rel in names else rel
            raise StepFailure(
                f"Missing{kind.capitalize()}",
                f"step '{step}' declares {kind} {what}, but "
                + ("nothing is there" if not path.exists() else "the folder is empty")
                + (" after the notebook ran" if kind == "output" else ""),
            )
        hashes.update(hash_path(path, run_dir))
    return hashes


def undeclared_writes(declared: Files, run_dir: Path, written: list[str]) -> dict[str, str]:
    """sha256 of each written file that ``declared`` (the step's outputs) does not cover."""
    hashes = {}
    for rel in written:
        if not declared.covers(rel) and (run_dir / rel).is_file():
            hashes[rel] = sha256_file(run_dir / rel)
    return hashes


@dataclass(frozen=True)
class StepJob:
    """What a worker needs to execute one step."""

    step: Step
    values: dict[str, Any]  # the notebook's parameters, the run folder's paths included
    settings: Settings
    run_dir: Path
    output: Path  # where the executed notebook goes


def execute_step(
    job: StepJob,
    new_kernel: Callable[[bool], KernelStart],
    kernel: KernelStart | None,
    stop: threading.Event,
) -> StepResult:
    """Run the step's notebook to completion, a failure, its time limit or ``stop``.

    ``new_kernel(plain)`` starts another kernel for this step (``plain``: not forked)."""
    step, settings, run_dir = job.step, job.settings, job.run_dir
    result = StepResult("running", iso(utcnow()))
    clock = time.monotonic()
    before = None
    try:
        result.inputs = hash_io(step.inputs, run_dir, step.name, "input")
        for rel in step.outputs.paths:  # the notebook writes into folders that exist
            (run_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        before = listing(run_dir)
        for attempt in range(1, settings.retries + 2):
            result.attempts = attempt
            if stop.is_set():
                result.status = "interrupted"
                result.error = {"type": "Interrupted", "message": "the run was interrupted"}
                break
            kernel = kernel or new_kernel(False)
            outcome, kernel = _attempt(job, kernel, new_kernel, stop, clock)
            result.kernel = kernel
            if outcome is None:
                result.outputs = hash_io(step.outputs, run_dir, step.name, "output")
                result.status, result.error = "completed", None
                break
            result.status, result.error = outcome
            if result.status != "failed" or result.error["type"] != DEAD_KERNEL:
                break  # a cell that raised, a timeout or an interrupt: never retried
            if attempt <= settings.retries:
                kernel.shutdown()
                kernel = None
    except StepFailure as failure:  # an input or output is missing
        result.status, result.error = "failed", failure.as_dict()
    if before is not None:
        written = written_since(before, run_dir)
        result.undeclared = undeclared_writes(step.outputs, run_dir, written)
    result.ended_at = iso(utcnow())
    result.duration_s = round(time.monotonic() - clock, 3)
    return result


def _attempt(
    job: StepJob,
    kernel: KernelStart,
    new_kernel: Callable[[bool], KernelStart],
    stop: threading.Event,
    began: float,
) -> tuple[tuple[str, dict[str, Any]] | None, KernelStart]:
    """One execution: (None on success, else (status, error)), and the kernel it used."""
    step, settings = job.step, job.settings
    timed_out = threading.Event()
    current = [kernel]  # what the watchdog kills: the kernel in use
    watchdog = None
    if settings.timeout is not None:
        left = max(settings.timeout - (time.monotonic() - began), 0.0)

        def expire() -> None:
            timed_out.set()
            current[0].kill()

        watchdog = threading.Timer(left, expire)
        watchdog.daemon = True
        watchdog.start()
    try:
        km = kernel.take()
        if km is None:  # not started ahead (the template refused it): start one plainly
            kernel = current[0] = new_kernel(True)
            km = kernel.take()
            if km is None:
                raise StepFailure(
                    "KernelStartError",
                    f"the kernel would not start: {first_line(str(kernel.error))}",
                )
        execute_notebook(step, job.values, job.output, km)
        return None, kernel
    except StepFailure as failure:
        error = failure.as_dict()
    finally:
        if watchdog is not None:
            watchdog.cancel()
    if timed_out.is_set():
        limit = settings.timeout
        error.update(
            type="Timeout",
            message=f"step '{step.name}' ran longer than its timeout of {limit:g} s",
            timeout_s=limit,
            cell=None,
        )
        return ("timed_out", error), kernel
    if stop.is_set():
        error.update(type="Interrupted", message="the run was interrupted", cell=None)
        return ("interrupted", error), kernel
    if error["type"] == DEAD_KERNEL or kernel.exit_code() is not None:
        code = _wait_exit_code(kernel)
        error.update(type=DEAD_KERNEL, message=kernel_death(code), exit_code=code, cell=None)
    return ("failed", error), kernel


def _wait_exit_code(kernel: KernelStart, timeout: float = 5.0) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = kernel.exit_code()
        if code is not None:
            return code
        time.sleep(0.05)
    return None
