"""Resolve each step's parameters and check them against its notebook before anything runs.

Precedence, lowest first: the pipeline's ``params`` < its step's ``params`` < the params file's
``params`` < its ``steps.<step>`` < ``-p key=value`` < ``-p step.key=value``. A pipeline-wide
value reaches every step whose notebook declares that name; a name no notebook declares is an
error, as is a value whose type differs from the notebook's default.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from nbmill._yaml import IDENTIFIER, load_yaml, parameter_mapping, reject_unknown
from nbmill.errors import ParamsError
from nbmill.project.notebook import UNKNOWN, NoParametersCell, Parameter, declared_parameters
from nbmill.project.secret import env_ref
from nbmill.project.spec import Pipeline, Settings

PARAMS_FILE_KEYS = {"params", "steps", "settings", "notify", "azure"}
RUN_DIR = "run_dir"  # a notebook that declares it gets the run folder's path from the runner


@dataclass(frozen=True)
class ParamsFile:
    """One environment's parameter set (``params/dev.yml`` and friends)."""

    path: Path | None = None
    params: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    sections: dict[str, Any] = field(default_factory=dict)  # other sections, e.g. notify
    settings: dict[str, Any] = field(default_factory=dict)  # step -> timeout/retries/cache


@dataclass(frozen=True)
class Layer:
    """Values from one source, for every step (step=None) or for one step."""

    source: str
    values: dict[str, Any]
    step: str | None = None


def load_params_file(path: str | Path) -> ParamsFile:
    path = Path(path)
    raw = load_yaml(path, "params", ParamsError) or {}
    where = str(path)
    if not isinstance(raw, dict):
        raise ParamsError(f"{where}: expected a mapping with 'params' and/or 'steps'")
    reject_unknown(
        raw,
        PARAMS_FILE_KEYS,
        where,
        ParamsError,
        "section",
        "pipeline-wide values go under 'params:', per-step ones under 'steps: <step>:'",
    )
    params = _values(raw.get("params"), f"{where}: 'params'")
    steps_raw = raw.get("steps") or {}
    if not isinstance(steps_raw, dict):
        raise ParamsError(f"{where}: 'steps' must map step names to their parameters")
    steps = {str(k): _values(v, f"{where}: steps: '{k}'") for k, v in steps_raw.items()}
    settings = raw.get("settings") or {}
    if not isinstance(settings, dict):
        raise ParamsError(f"{where}: 'settings' must map step names to timeout/retries/cache")
    sections = {k: v for k, v in raw.items() if k not in ("params", "steps", "settings")}
    return ParamsFile(path=path, params=params, steps=steps, sections=sections, settings=settings)


def step_settings(pipeline: Pipeline, params_file: ParamsFile | None) -> dict[str, Settings]:
    """Each step's timeout, retries and cache: the pipeline's, under the params file's."""
    given = params_file.settings if params_file else {}
    where = str(params_file.path) if params_file else ""
    for name in given:
        if name not in pipeline.steps:
            raise ParamsError(
                f"{where}: settings: unknown step '{name}' (steps: {', '.join(pipeline.steps)})"
            )
    return {
        name: step.settings.merged(given.get(name), f"{where}: settings: '{name}'", ParamsError)
        for name, step in pipeline.steps.items()
    }


def _values(raw: Any, at: str) -> dict[str, Any]:
    return parameter_mapping(raw, at, ParamsError)


def parse_overrides(items: Iterable[str], source: str = "-p") -> list[Layer]:
    """``key=value`` (every step) or ``step.key=value``; values are read as YAML scalars."""
    layers: list[Layer] = []
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ParamsError(f"{source} {item!r}: expected key=value or step.key=value")
        step, _, name = key.rpartition(".")
        if not IDENTIFIER.match(name):
            raise ParamsError(f"{source} {item!r}: '{name}' is not a valid Python parameter name")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        layers.append(Layer(source=f"{source} {key}", values={name: value}, step=step or None))
    return layers


def layers_for(
    pipeline: Pipeline, params_file: ParamsFile | None, overrides: Iterable[str] = ()
) -> list[Layer]:
    """All sources of values, lowest precedence first."""
    layers = [Layer(str(pipeline.path), pipeline.params)]
    layers += [Layer(str(pipeline.path), s.params, s.name) for s in pipeline.steps.values()]
    if params_file is not None:
        source = str(params_file.path)
        layers.append(Layer(source, params_file.params))
        layers += [Layer(source, values, step) for step, values in params_file.steps.items()]
    cli = parse_overrides(overrides)
    layers += [layer for layer in cli if layer.step is None]
    layers += [layer for layer in cli if layer.step is not None]
    return layers


def resolve_params(
    pipeline: Pipeline,
    params_file: ParamsFile | None = None,
    overrides: Iterable[str] = (),
    declared: Mapping[str, Mapping[str, Parameter]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Each step's parameter values; raises ParamsError on the first problem found."""
    if declared is None:
        declared = {name: declared_parameters(s.notebook) for name, s in pipeline.steps.items()}
    _check_io_declared(pipeline, declared)
    resolved: dict[str, dict[str, Any]] = {name: {} for name in pipeline.steps}
    for layer in layers_for(pipeline, params_file, overrides):
        targets = _targets(pipeline, layer, declared)
        for name, value in layer.values.items():
            for step in targets[name]:
                resolved[step][name] = _checked(value, declared[step][name], layer, step)
    return resolved


def run_folder_parameters(
    pipeline: Pipeline, declared: Mapping[str, Mapping[str, Parameter]]
) -> dict[str, dict[str, str]]:
    """Per step, the parameters the runner sets to paths in the run folder (relative to it;
    ``.`` is the folder itself): its named inputs and outputs, and ``run_dir`` where the
    notebook declares it."""
    paths: dict[str, dict[str, str]] = {}
    for name, step in pipeline.steps.items():
        paths[name] = {**step.inputs.params, **step.outputs.params}
        if RUN_DIR in declared[name]:
            paths[name][RUN_DIR] = "."
    return paths


def _targets(
    pipeline: Pipeline, layer: Layer, declared: Mapping[str, Mapping[str, Parameter]]
) -> dict[str, list[str]]:
    """For each name in the layer, the steps it applies to (validating as it goes)."""
    at = layer.source
    if layer.step is not None and layer.step not in pipeline.steps:
        raise ParamsError(f"{at}: unknown step '{layer.step}' (steps: {', '.join(pipeline.steps)})")
    steps = [layer.step] if layer.step else list(pipeline.steps)
    targets: dict[str, list[str]] = {}
    for name in layer.values:
        if name == RUN_DIR:
            raise ParamsError(
                f"{at}: '{RUN_DIR}' is set by the runner to the run folder; it cannot be given"
            )
        for step_name in steps:
            io = _io(pipeline, step_name)
            if name in io:
                raise ParamsError(
                    f"{at}: '{name}' is {io[name]} of step '{step_name}'; the runner sets it to "
                    "a path in the run folder, so it cannot be given as a parameter"
                )
        if layer.step:
            known = declared[layer.step]
            if isinstance(known, NoParametersCell):
                raise ParamsError(
                    f"{at}: step '{layer.step}': cannot set '{name}': {known.message}"
                )
            if name not in known:
                raise ParamsError(
                    f"{at}: step '{layer.step}': unknown parameter '{name}' "
                    f"(the notebook defines: {_names(known, pipeline, layer.step)})"
                )
            targets[name] = [layer.step]
        else:
            targets[name] = [s for s in steps if name in declared[s]]
            if not targets[name]:
                every = sorted({n for s in steps for n in _user_names(declared[s], pipeline, s)})
                raise ParamsError(
                    f"{at}: unknown parameter '{name}' (no step's notebook defines it; "
                    f"the notebooks define: {', '.join(every) or 'nothing'})"
                )
    return targets


def _io(pipeline: Pipeline, step: str) -> dict[str, str]:
    s = pipeline.steps[step]
    return {
        **{k: "an input" for k in s.inputs.params},
        **{k: "an output" for k in s.outputs.params},
    }


def _user_names(known: Mapping[str, Parameter], pipeline: Pipeline, step: str) -> list[str]:
    io = _io(pipeline, step)
    return sorted(n for n in known if n not in io)


def _names(known: Mapping[str, Parameter], pipeline: Pipeline, step: str) -> str:
    return ", ".join(_user_names(known, pipeline, step)) or "no parameters"


def _check_io_declared(pipeline: Pipeline, declared: Mapping[str, Mapping[str, Parameter]]):
    for name, step in pipeline.steps.items():
        for io_name, kind in _io(pipeline, name).items():
            if isinstance(declared[name], NoParametersCell):
                raise ParamsError(
                    f"{pipeline.path}: step '{name}': {kind.split()[-1]} '{io_name}' cannot be "
                    f"passed: {declared[name].message}"
                )
            if io_name not in declared[name]:
                raise ParamsError(
                    f"{pipeline.path}: step '{name}': {kind.split()[-1]} '{io_name}' "
                    "is not a parameter of "
                    f'{step.notebook.name}; add `{io_name} = "..."` to its parameters cell'
                )


def _checked(value: Any, param: Parameter, layer: Layer, step: str) -> Any:
    default = param.default
    ref = env_ref(value)
    if ref is not None:
        if ref.value() is None:
            raise ParamsError(
                f"{layer.source}: step '{step}': parameter '{param.name}' is {ref}, but "
                f"{ref.name} is not set; export it before running"
            )
        if default is not UNKNOWN and default is not None and not isinstance(default, str):
            raise ParamsError(
                f"{layer.source}: step '{step}': parameter '{param.name}' is {ref}, but the "
                f"notebook's default ({param.source}) is not a string"
            )
        return ref
    if default is UNKNOWN or default is None or value is None:
        return value
    expected = type(default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is str and isinstance(value, date):  # YAML read 2026-12-01T09:00Z as a time
        return value.isoformat()
    ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
    if isinstance(default, (list, tuple)):
        ok = isinstance(value, (list, tuple))
    if not ok:
        raise ParamsError(
            f"{layer.source}: step '{step}': parameter '{param.name}' should be "
            f"{expected.__name__} like the notebook's default ({param.source}), "
            f"got {type(value).__name__} {value!r}"
        )
    return value
