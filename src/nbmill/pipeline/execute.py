"""One notebook through papermill: parameters and paths injected, in a fresh kernel.

The step's kernel (kernels.py) is started by nbmill with the step's environment and working
directory, and handed to papermill as ``km``: papermill's own ``cwd`` option would change the
whole process's working directory (from a worker thread, with other steps running), and a kernel
papermill starts inherits the process's environment.

papermill saves the whole notebook when every cell starts and ends. nbmill's engine saves it
when execution starts, when a cell raises, at the end, and otherwise at most every
``SAVE_EVERY_S`` seconds: a killed run still leaves a recent partial notebook.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from nbmill.pipeline.kernels import KERNEL
from nbmill.project.secret import install_papermill_translator
from nbmill.project.spec import Step

ENGINE = "nbmill"
SAVE_EVERY_S = 10.0


@dataclass
class StepFailure(Exception):
    """Why a step did not complete (a cell raised, an output is missing, the kernel died)."""

    kind: str
    message: str
    cell: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "message": self.message, "cell": self.cell}


def first_line(text: str) -> str:
    text = (text or "").strip()
    return text.splitlines()[0] if text else ""


@cache
def _register_engine() -> None:
    """papermill's nbclient engine, with a notebook manager that saves less often (registered
    once per process)."""
    from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines

    class ThrottledManager(NotebookExecutionManager):
        forced = False
        saved_at = 0.0

        def save(self, **kwargs):
            if self.forced or time.monotonic() - self.saved_at >= SAVE_EVERY_S:
                super().save(**kwargs)
                self.saved_at = time.monotonic()

        def _forced(self, method, *args, **kwargs):
            self.forced = True
            try:
                return method(*args, **kwargs)
            finally:
                self.forced = False

        def notebook_start(self, **kwargs):
            return self._forced(super().notebook_start, **kwargs)

        def cell_exception(self, cell, cell_index=None, **kwargs):
            super().cell_exception(cell, cell_index=cell_index, **kwargs)
            self._forced(self.save)

        def notebook_complete(self, **kwargs):
            return self._forced(super().notebook_complete, **kwargs)

    class ThrottledEngine(NBClientEngine):
        @classmethod
        def execute_notebook(
            cls, nb, kernel_name, output_path=None, progress_bar=True, log_output=False, **kwargs
        ):
            kwargs.pop("autosave_cell_every", None)
            manager = ThrottledManager(
                nb, output_path=output_path, log_output=log_output, progress_bar=progress_bar
            )
            manager.notebook_start()
            try:
                cls.execute_managed_notebook(manager, kernel_name, log_output=log_output, **kwargs)
            finally:
                manager.cleanup_pbar()
                manager.notebook_complete()
            return manager.nb

    papermill_engines.register(ENGINE, ThrottledEngine)


def execute_notebook(step: Step, parameters: dict[str, Any], output: Path, km: Any) -> None:
    """Run ``step``'s notebook with ``parameters`` in the started kernel ``km``, into
    ``output``; raises StepFailure (the partial notebook, with papermill's error marker, is
    written all the same). The kernel is the caller's to shut down."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    try:
        papermill.execute_notebook(
            str(step.notebook),
            str(output),
            parameters=parameters,
            kernel_name=KERNEL,
            engine_name=ENGINE,
            km=km,
            progress_bar=False,
            log_output=False,
        )
    except PapermillExecutionError as exc:
        raise StepFailure(exc.ename, first_line(exc.evalue), cell=exc.exec_count) from None
    except Exception as exc:  # the kernel died, timed out, or would not start
        raise StepFailure(type(exc).__name__, first_line(str(exc))) from None


def preload_runtime() -> None:
    """Import, in this thread and before the worker and kernel threads start, what they use.

    Two threads importing modules that depend on each other can see one of them half
    initialised; so the threads started later import nothing new. The background thread then
    compiles nbconvert's templates with one small page, and opens MLflow's store only once a
    step has used MLflow.
    """
    import jupyter_client.provisioning  # noqa: F401
    import nbconvert.exporters.html  # noqa: F401 - the renderer's first page compiles the rest
    import papermill  # noqa: F401
    import papermill.engines  # noqa: F401
    from jupyter_client.kernelspec import KernelSpecManager

    KernelSpecManager().get_kernel_spec(KERNEL)  # imports ipykernel's kernelspec
    install_papermill_translator()  # ${env:NAME} values are injected as os.environ lookups
    _register_engine()
