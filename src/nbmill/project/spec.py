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
        inputs: {train_data: data/train.csv}   # must be an output of a step it needs
        params: {alpha: 1.0}
      report:
        notebook: notebooks/report.ipynb      # builds its paths from run_dir itself
        needs: [train]
        inputs: [data/train.csv]
        outputs: [report/summary.csv, report/plots]

Inputs and outputs are paths inside the run folder, given either as a mapping of notebook
parameter name to path (the runner injects the absolute path as that parameter) or as a list of
paths (declared only: for notebooks that take ``run_dir`` and build their paths themselves).
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
class Files:
    """A step's inputs, or its outputs: paths inside the run folder (a folder covers every file
    under it). ``params`` are those passed to the notebook, by parameter name."""

    paths: tuple[str, ...] = ()
    params: dict[str, str] = field(default_factory=dict)

    def covers(self, rel: str) -> bool:
        """Whether the file at ``rel`` is one of these paths or lies under one of them."""
        return any(within(rel, path) for path in self.paths)


def within(rel: str, path: str) -> bool:
    """Whether ``rel`` is ``path`` or lies under the folder ``path`` (POSIX, normalised)."""
    rel, path = _norm(rel), _norm(path)
    return rel == path or rel.startswith(path + "/")


@dataclass(frozen=True)
class Step:
    name: str
    notebook: Path
    needs: tuple[str, ...] = ()
    inputs: Files = Files()
    outputs: Files = Files()
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
        inputs=_files(body.get("inputs", {}), f"{at}: 'inputs'"),
        outputs=_files(body.get("outputs", {}), f"{at}: 'outputs'"),
        params=_mapping(body.get("params", {}), f"{at}: 'params'"),
        description=str(body.get("description", "")),
        settings=Settings().merged({k: body[k] for k in SETTING_KEYS if k in body}, at),
    )


def _mapping(value: Any, at: str) -> dict[str, Any]:
    return parameter_mapping(value, at, SpecError)


def _files(value: Any, at: str) -> Files:
    """A mapping of parameter name to path, or a list of paths."""
    if isinstance(value, list):
        for index, rel in enumerate(value):
            _check_path(rel, f"{at}[{index}]")
        return Files(paths=tuple(_norm(rel) for rel in value))
    if value is not None and not isinstance(value, dict):
        raise SpecError(f"{at} must be a mapping of notebook parameter to path, or a list of paths")
    mapping = _mapping(value, at)
    for key, rel in mapping.items():
        _check_path(rel, f"{at}: '{key}'")
    params = {key: _norm(rel) for key, rel in mapping.items()}
    return Files(paths=tuple(params.values()), params=params)


def _check_path(rel: Any, at: str) -> None:
    if not isinstance(rel, str) or not rel:
        raise SpecError(f"{at} must be a path inside the run folder")
    posix = PurePosixPath(rel)
    if posix.is_absolute() or ".." in posix.parts:
        raise SpecError(f"{at}: '{rel}' must be a relative path inside the run folder")


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
        inputs, outputs = set(step.inputs.params), set(step.outputs.params)
        clash = inputs & outputs | (set(step.params) & (inputs | outputs))
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
        for rel in pipeline.steps[name].outputs.paths:
            other = next((p for p in produced if within(rel, p) or within(p, rel)), None)
            if other is not None and produced[other] != name:
                raise SpecError(
                    f"{where}: step '{name}': output '{rel}' is also written by step "
                    f"'{produced[other]}' (its output '{other}')"
                )
            produced[rel] = name
    for name in order:
        step = pipeline.steps[name]
        names = {rel: f"'{param}' ({rel})" for param, rel in step.inputs.params.items()}
        upstream = ancestors(pipeline, name)
        for rel in step.inputs.paths:
            what = names.get(rel, f"'{rel}'")
            maker = next((produced[p] for p in produced if within(rel, p)), None)
            if maker is None:
                raise SpecError(
                    f"{where}: step '{name}': input {what} is not an output of any step"
                )
            if maker not in upstream:
                raise SpecError(
                    f"{where}: step '{name}': input {what} is made by step '{maker}', which is "
                    "not in its 'needs'"
                )


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
