"""A run's plan: everything loaded and checked before anything executes, and what the cache
would do with it (``--explain``).

``plan`` reads the pipeline, the params file and nbmill.yml, reads each notebook's parameters
cell once, and resolves every step's values; a wrong parameter fails here, before any kernel
starts. The scheduler takes the ``Plan`` whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbmill.errors import NbmillError
from nbmill.pipeline import cache
from nbmill.project.config import ProjectConfig, load_config
from nbmill.project.notebook import declared_parameters
from nbmill.project.params import (
    ParamsFile,
    load_params_file,
    resolve_params,
    run_folder_parameters,
    step_settings,
)
from nbmill.project.spec import Pipeline, Settings, Step, ancestors, find_project_dir, load_pipeline

ALL = "*"  # --force-all: every step


@dataclass(frozen=True)
class Plan:
    """Everything a run needs, loaded and checked before anything executes."""

    project: Path
    pipeline: Pipeline
    params_file: ParamsFile | None
    config: ProjectConfig
    resolved: dict[str, dict[str, Any]]  # step -> its parameter values
    settings: dict[str, Settings]  # step -> timeout, retries, cache
    paths: dict[str, dict[str, str]]  # step -> parameters set to paths in the run folder

    def parameters(self, step: str, run_dir: Path) -> dict[str, Any]:
        """What papermill injects into the step's notebook for a run in ``run_dir``."""
        paths = {name: str(run_dir / rel) for name, rel in self.paths[step].items()}
        return {**self.resolved[step], **paths}

    def left_out(self, only: Iterable[str]) -> list[str]:
        """The steps a run of ``only`` (and what they need) does not run, in pipeline order;
        NbmillError for an unknown step. Nothing is left out when ``only`` is empty."""
        names = list(only)
        unknown = [name for name in names if name not in self.pipeline.steps]
        if unknown:
            raise NbmillError(
                f"--only: unknown step '{unknown[0]}' (steps: {', '.join(self.pipeline.steps)})"
            )
        if not names:
            return []
        kept = set(names).union(*(ancestors(self.pipeline, name) for name in names))
        return [name for name in self.pipeline.order if name not in kept]

    def forced(self, force: Iterable[str]) -> set[str]:
        """The steps ``--force`` names (``*``: every one); NbmillError for an unknown one."""
        names = set(force)
        forced = set(self.pipeline.steps) if ALL in names else names
        unknown = sorted(forced - set(self.pipeline.steps))
        if unknown:
            raise NbmillError(
                f"--force: unknown step '{unknown[0]}' (steps: {', '.join(self.pipeline.steps)})"
            )
        return forced

    def key_parts(
        self, name: str, upstream: dict[str, dict[str, str]], environment: str
    ) -> dict[str, Any]:
        """The parts of the step's cache key, given what the steps before it wrote."""
        step = self.pipeline.steps[name]
        values = self.resolved[name]
        return {
            "code": cache.code_digest(step.notebook),
            "params": {k: str(v) if isinstance(v, str) else v for k, v in values.items()},
            "inputs": cache.step_inputs(step, upstream),
            "environment": environment,
            "modules": cache.project_modules(step.notebook, self.project),
        }

    def step(self, name: str) -> Step:
        return self.pipeline.steps[name]


def plan(
    pipeline_path: str | Path,
    params_path: str | Path | None = None,
    overrides: Iterable[str] = (),
    runs_dir: str | Path | None = None,
    project_dir: str | Path | None = None,
) -> Plan:
    project = Path(project_dir).resolve() if project_dir else find_project_dir(Path(pipeline_path))
    pipeline = load_pipeline(pipeline_path, project)
    params_file = load_params_file(params_path) if params_path else None
    config = load_config(project, Path(runs_dir) if runs_dir else None)
    declared = {name: declared_parameters(s.notebook) for name, s in pipeline.steps.items()}
    return Plan(
        project,
        pipeline,
        params_file,
        config.with_params_file(params_file),
        resolve_params(pipeline, params_file, overrides, declared),
        step_settings(pipeline, params_file),
        run_folder_parameters(pipeline, declared),
    )


def explain(p: Plan, force: Iterable[str] = ()) -> list[dict[str, Any]]:
    """For each step: would it come from the cache, its key and parts, and why. Nothing runs.

    A step's inputs are known only when the steps before it come from the cache (their
    outputs are then the cached ones); below a step that executes, the answer is a miss."""
    from nbmill.records.provenance import environment

    forced = p.forced(force)
    index = cache.Cache(p.config.runs_dir, p.pipeline.name)
    fingerprint = environment(p.project)[0]["fingerprint"]
    outputs: dict[str, dict[str, str]] = {}  # what each step taken from the cache wrote
    lines = []
    for name in p.pipeline.order:
        line: dict[str, Any] = {"step": name, "hit": False, "key": None, "parts": None}
        upstream = ancestors(p.pipeline, name)
        missing = [a for a in p.pipeline.order if a in upstream and a not in outputs]
        if missing:
            line["reason"] = f"miss: step '{missing[0]}' before it executes, so its inputs change"
        else:
            parts = p.key_parts(name, {a: outputs[a] for a in upstream}, fingerprint)
            line.update(key=cache.key_of(parts), parts=parts)
            if not p.settings[name].cache:
                line["reason"] = "miss: cache: false for this step"
            elif name in forced:
                line["reason"] = "miss: --force"
            else:
                hit, why = index.lookup(name, parts, p.config.runs_dir)
                line["hit"] = hit is not None
                line["reason"] = f"hit: {why}" if hit else f"miss: {why}"
                if hit:
                    outputs[name] = dict(hit.entry.get("outputs") or {})
        lines.append(line)
    return lines
