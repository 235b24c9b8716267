"""The step a piece of code runs in, as the runner told it through the environment: which run,
which step, which project; the run's record and settings as the runner saw them; and a
notifier on its ledger and sinks.

Outside ``nbmill run`` (a notebook opened on its own in JupyterLab) the context is a scratch
one, writing to ``runs/scratch``, so that a notebook runs unchanged. ``nbmill.tracking`` (what
notebooks call) and the models, serving and monitoring code that notebooks call read it here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbmill.project.spec import find_project_dir
from nbmill.records.runjson import RUN_JSON, SCRATCH, read

ENV_RUN_ID = "NBMILL_RUN_ID"
ENV_RUN_DIR = "NBMILL_RUN_DIR"
ENV_STEP = "NBMILL_STEP"
ENV_PROJECT_DIR = "NBMILL_PROJECT_DIR"
ENV_PIPELINE = "NBMILL_PIPELINE"
ENV_WHY = "NBMILL_WHY"  # why the run: for a step whose run.json is elsewhere (Azure ML)


@dataclass(frozen=True)
class StepContext:
    run_id: str
    run_dir: Path
    step: str
    project_dir: Path
    pipeline: str
    reason: str | None = None  # the run's why, given where its run.json is not at hand

    @property
    def interactive(self) -> bool:
        return self.run_id == SCRATCH

    def environment(self) -> dict[str, str]:
        """The variables that tell a kernel this context (what the runner sets)."""
        return {
            ENV_RUN_ID: self.run_id,
            ENV_RUN_DIR: str(self.run_dir),
            ENV_STEP: self.step,
            ENV_PROJECT_DIR: str(self.project_dir),
            ENV_PIPELINE: self.pipeline,
            **({ENV_WHY: self.reason} if self.reason else {}),
        }

    def why(self) -> str | None:
        """Why this run: its record's ``why``, else the one it was given."""
        return self.record().get("why") or self.reason

    def record(self) -> dict[str, Any]:
        """The run's run.json (validated), or {} outside a run."""
        if self.interactive or not (self.run_dir / RUN_JSON).exists():
            return {}
        return read(self.run_dir)

    def config(self, project_dir: Path | None = None):
        """The project's settings as the runner saw them (its runs folder, the sinks of the
        run's params file); a project's own settings outside a run or for another project."""
        from nbmill.project.config import load_config
        from nbmill.project.params import load_params_file

        project = Path(project_dir or self.project_dir).resolve()
        if self.interactive or self.project_dir.resolve() != project:
            return load_config(project)
        config = load_config(project, self.run_dir.parent)  # as the runner saw it: --runs-dir
        params_file = (self.record().get("params_file") or {}).get("file")
        if params_file and (project / params_file).is_file():
            config = config.with_params_file(load_params_file(project / params_file))
        return config


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
            reason=env.get(ENV_WHY),
        )
    project = find_project_dir(Path.cwd())
    return StepContext(SCRATCH, project / "runs" / SCRATCH, "interactive", project, SCRATCH)


@contextmanager
def notifier(project_dir: Path | None = None, given=None) -> Iterator[Any]:
    """``given`` if a Notifier was passed in, else one on the ledger and sinks of the run this
    code runs in (or of the project), closed when the block ends."""
    if given is not None:
        yield given
        return
    from nbmill.governance.events import Notifier

    own = Notifier(context().config(project_dir))
    try:
        yield own
    finally:
        own.close()
