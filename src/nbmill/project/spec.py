"""Pipeline and Step: load and validate ``pipelines/*.yml`` into typed objects.

A pipeline file looks like::

    name: training
    params: {seed: 42}            # defaults for every step whose notebook declares them
    steps:
      prep:
        notebook: notebooks/prep.ipynb
        outputs: {train_data: data/train.csv}
      train:
        notebook: notebooks/train.ipynb
        needs: [prep]
        inputs: {train_data: data/train.csv}   # must be an output of a step in `needs`
        params: {alpha: 1.0}

Inputs and outputs map a notebook parameter name to a path inside the run folder; the runner
injects the absolute path as that parameter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from nbmill._yaml import load_yaml, parameter_mapping, reject_unknown
from nbmill.errors import NbmillError, SpecError

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
SETTING_KEYS = {"timeout", "retries", "cache"}
STEP_KEYS = {"notebook", "needs", "inputs", "outputs", "params", "description"} | SETTING_KEYS
PIPELINE_KEYS = {"name", "description", "params", "steps"}


@dataclass(frozen=True)
class Settings:
    """How a step runs: ``timeout`` (seconds for the whole notebook, None: no limit),
    ``retries`` (further attempts after the kernel died; a cell that raised is never retried)
    and ``cache`` (False for steps with side effects beyond their outputs)."""

    timeout: float | None = None
    retries: int = 0
    cache: bool = True

    def merged(self, raw: Any, at: str, error: type[NbmillError] = SpecError) -> Settings:
        """These settings with those of a mapping (``timeout``/``retries``/``cache``) over them."""
        if raw is None:
            return self
        if not isinstance(raw, dict):
            raise error(f"{at}: expected a mapping of {', '.join(sorted(SETTING_KEYS))}")
        reject_unknown(raw, SETTING_KEYS, at, error, "setting")
        timeout, retries, cache = (
            raw.get("timeout", self.timeout),
            raw.get("retries", self.retries),
            raw.get("cache", self.cache),
        )
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
        ):
            raise error(f"{at}: 'timeout' must be a positive number of seconds, got {timeout!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise error(f"{at}: 'retries' must be a whole number >= 0, got {retries!r}")
        if not isinstance(cache, bool):
            raise error(f"{at}: 'cache' must be true or false, got {cache!r}")
        return Settings(None if timeout is None else float(timeout), retries, cache)


@dataclass(frozen=True)
class Step:
    name: str
    notebook: Path
    needs: tuple[str, ...] = ()
    inputs: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    settings: Settings = Settings()


@dataclass(frozen=True)
class Pipeline:
    name: str
    path: Path
    steps: dict[str, Step]
    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def order(self) -> list[str]:
        """Step names in an order where every step comes after all it needs."""
        return topological_order({s.name: s.needs for s in self.steps.values()})


def load_pipeline(path: str | Path, project_dir: Path | None = None) -> Pipeline:
    """Read and validate a pipeline file; notebook paths are resolved against the project."""
    path = Path(path)
    project_dir = Path(project_dir) if project_dir else find_project_dir(path)
    raw = load_yaml(path, "pipeline", SpecError)
    return parse_pipeline(raw, path, project_dir)


def parse_pipeline(raw: Any, path: Path, project_dir: Path) -> Pipeline:
    where = str(path)
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: expected a mapping with 'name' and 'steps'")
    reject_unknown(raw, PIPELINE_KEYS, where, SpecError)
    name = raw.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise SpecError(f"{where}: 'name' must be a word of letters, digits, '-' or '_'")
    params = _mapping(raw.get("params", {}), f"{where}: 'params'")
    steps_raw = raw.get("steps")
    if not isinstance(steps_raw, dict) or not steps_raw:
        raise SpecError(f"{where}: 'steps' must be a mapping of step name to step")
    steps = {}
    for step_name, body in steps_raw.items():
        steps[str(step_name)] = _parse_step(str(step_name), body, where, project_dir)
    pipeline = Pipeline(
        name=name,
        path=path,
        steps=steps,
        params=params,
        description=str(raw.get("description", "")),
    )
    _check_graph(pipeline)
    return pipeline


def _parse_step(name: str, body: Any, where: str, project_dir: Path) -> Step:
    at = f"{where}: step '{name}'"
    if not NAME.match(name):
        raise SpecError(f"{at}: a step name is a word of letters, digits, '-' or '_'")
    if not isinstance(body, dict):
        raise SpecError(f"{at}: expected a mapping with at least 'notebook'")
    reject_unknown(body, STEP_KEYS, at, SpecError)
    notebook = body.get("notebook")
    if not isinstance(notebook, str) or not notebook.endswith(".ipynb"):
        raise SpecError(f"{at}: 'notebook' must be the path of an .ipynb file")
    notebook_path = (project_dir / notebook).resolve()
    if not notebook_path.is_file():
        raise SpecError(f"{at}: notebook '{notebook}' not found (looked in {project_dir})")
    needs = body.get("needs", [])
    if isinstance(needs, str):
        needs = [needs]
    if not isinstance(needs, list) or not all(isinstance(n, str) for n in needs):
        raise SpecError(f"{at}: 'needs' must be a list of step names")
    return Step(
        name=name,
        notebook=notebook_path,
        needs=tuple(needs),
        inputs=_paths(body.get("inputs", {}), f"{at}: 'inputs'"),
        outputs=_paths(body.get("outputs", {}), f"{at}: 'outputs'"),
        params=_mapping(body.get("params", {}), f"{at}: 'params'"),
        description=str(body.get("description", "")),
        settings=Settings().merged({k: body[k] for k in SETTING_KEYS if k in body}, at),
    )


def _mapping(value: Any, at: str) -> dict[str, Any]:
    return parameter_mapping(value, at, SpecError)


def _paths(value: Any, at: str) -> dict[str, str]:
    mapping = _mapping(value, at)
    for key, rel in mapping.items():
        if not isinstance(rel, str) or not rel:
            raise SpecError(f"{at}: '{key}' must be a path inside the run folder")
        posix = PurePosixPath(rel)
        if posix.is_absolute() or ".." in posix.parts:
            raise SpecError(f"{at}: '{key}': '{rel}' must be a relative path inside the run folder")
    return mapping


def _check_graph(pipeline: Pipeline) -> None:
    where = str(pipeline.path)
    for step in pipeline.steps.values():
        for need in step.needs:
            if need not in pipeline.steps:
                known = ", ".join(pipeline.steps)
                raise SpecError(
                    f"{where}: step '{step.name}': 'needs' names unknown step '{need}' "
                    f"(steps: {known})"
                )
        clash = set(step.inputs) & set(step.outputs) | (set(step.params) & _io_names(step))
        if clash:
            raise SpecError(
                f"{where}: step '{step.name}': '{sorted(clash)[0]}' is declared twice "
                "(an input, output or parameter name must be unique within a step)"
            )
    try:
        order = pipeline.order
    except SpecError as exc:
        raise SpecError(f"{where}: {exc}") from None
    produced: dict[str, str] = {}
    for name in order:
        step = pipeline.steps[name]
        for rel in step.outputs.values():
            key = _norm(rel)
            if key in produced:
                raise SpecError(
                    f"{where}: step '{name}': output '{rel}' is also written by step "
                    f"'{produced[key]}'"
                )
            produced[key] = name
    for name in order:
        step = pipeline.steps[name]
        upstream = ancestors(pipeline, name)
        for param, rel in step.inputs.items():
            maker = produced.get(_norm(rel))
            if maker is None:
                raise SpecError(
                    f"{where}: step '{name}': input '{param}' ({rel}) is not an output of any step"
                )
            if maker not in upstream:
                raise SpecError(
                    f"{where}: step '{name}': input '{param}' ({rel}) is made by step "
                    f"'{maker}', which is not in its 'needs'"
                )


def _io_names(step: Step) -> set[str]:
    return set(step.inputs) | set(step.outputs)


def _norm(rel: str) -> str:
    return str(PurePosixPath(rel))


def ancestors(pipeline: Pipeline, name: str) -> set[str]:
    seen: set[str] = set()
    stack = list(pipeline.steps[name].needs)
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(pipeline.steps[current].needs)
    return seen


def topological_order(graph: dict[str, tuple[str, ...]]) -> list[str]:
    """Kahn's algorithm, stable in declaration order; raises SpecError naming a cycle."""
    remaining = {name: set(needs) for name, needs in graph.items()}
    order: list[str] = []
    while remaining:
        ready = [name for name, needs in remaining.items() if not needs]
        if not ready:
            cycle = " -> ".join(sorted(remaining))
            raise SpecError(f"steps form a cycle through 'needs': {cycle}")
        for name in ready:
            order.append(name)
            del remaining[name]
        for needs in remaining.values():
            needs.difference_update(ready)
    return order


def find_project_dir(start: Path) -> Path:
    """The nearest folder at or above ``start`` holding pyproject.toml or pipelines/."""
    start = start.resolve()
    for folder in [start if start.is_dir() else start.parent, *start.parents]:
        if (folder / "pyproject.toml").is_file() or (folder / "pipelines").is_dir():
            return folder
    return Path.cwd()
