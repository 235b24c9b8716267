"""A pipeline as an Azure ML pipeline job: one command job per step, each running the step's
notebook through papermill with the resolved parameters, wired by uri_folder inputs and outputs.

Each step has one output, ``run``: its slice of the run folder (its outputs at the same relative
paths as in a local run, and the executed notebook and its HTML), so that downloading every
step's ``run`` into ``runs/<id>/`` gives the record a local run leaves. A step that reads another
step's output mounts that step's ``run`` as an input named after it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nbmill.azure import sdk
from nbmill.azure.dry_run import DryRun, out_dir
from nbmill.azure.environment import environment
from nbmill.azure.settings import AzureSettings, Workspace, settings_from
from nbmill.errors import NbmillError
from nbmill.pipeline.assemble import STEP_LEDGER


@dataclass(frozen=True)
class JobRun:
    """A pipeline run on Azure ML: nbmill's run id, the job's final status, and the folder its
    steps' outputs were downloaded into."""

    id: str
    status: str
    run_dir: Path

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "record": str(self.run_dir), "on": "azureml"}


def _planned_job(pipeline, params, overrides: Iterable[str], runs_dir, reason=None):
    """The plan of a run (checked as a local run's is), its id, why, and its pipeline job."""
    from nbmill._time import new_run_id
    from nbmill.pipeline.assemble import run_why
    from nbmill.pipeline.runner import plan

    planned = plan(pipeline, params, overrides, runs_dir)
    sections = planned.params_file.sections if planned.params_file else {}
    settings = settings_from(sections, str(params) if params else "params")
    run_id = new_run_id()
    why = run_why(planned, reason)
    job = pipeline_job(planned, settings, run_id, planned.project, why=why)
    return planned, run_id, why, job


def dry_run(
    pipeline, params=None, overrides: Iterable[str] = (), runs_dir=None, out=None, reason=None
) -> DryRun:
    """The pipeline's Azure ML job written to ``out``/job.yml (default: the runs folder's
    dry-run/), loaded back and validated by the SDK, with nbmill's binding checks."""
    planned, _, _, job = _planned_job(pipeline, params, overrides, runs_dir, reason)
    path = write(job, out_dir(out, planned.config.runs_dir) / "job.yml")
    return DryRun("pipeline job", path, validate(path))


def run_pipeline(
    pipeline,
    params=None,
    overrides: Iterable[str] = (),
    runs_dir=None,
    log: Callable = print,
    reason: str | None = None,
) -> JobRun:
    """Submit the pipeline as an Azure ML job to the workspace the environment names, stream
    it, download its steps' outputs, and make them the record runs/<id>/, as a local run's
    (``nbmill.pipeline.assemble``); NbmillError unless it completed."""
    import tempfile

    from nbmill.pipeline.assemble import assemble

    workspace = Workspace.from_environment()  # before anything is built or a folder made
    planned, run_id, why, job = _planned_job(pipeline, params, overrides, runs_dir, reason)
    with tempfile.TemporaryDirectory(prefix="nbmill-job-") as downloads:
        status, name, steps, outputs = submit(job, workspace, Path(downloads), log)
        record = assemble(planned, run_id, why, outputs, steps, ended=status, job=name)
    if record.status != "completed":
        raise NbmillError(f"Azure ML job {name} ended {status}; the record: {record.dir}")
    return JobRun(run_id, status, record.dir)


def _producer(step, path: str, pipeline) -> str:
    """The step (among those ``step`` needs, directly or not) whose output ``path`` is."""
    from nbmill.project.spec import ancestors

    for name in sorted(ancestors(pipeline, step.name)):
        if pipeline.steps[name].outputs.covers(path):
            return name
    raise NbmillError(f"step '{step.name}': no step it needs writes its input {path!r}")


def step_command(
    step,
    params: dict[str, Any],
    pipeline,
    run_id: str,
    project_dir: Path,
    code_paths: tuple[str, ...] = ("src",),
    why: str | None = None,
) -> tuple[str, dict[str, str]]:
    """The shell command of one step, and the inputs it mounts (name -> producer step).
    ``code_paths``: the project's own packages in the uploaded snapshot (nbmill.yml's);
    ``why``: the run's reason (its run.json is written only when the outputs come home). The
    step's events go to a ledger inside its output, appended to the project's on assembly."""
    producers = {rel: _producer(step, rel, pipeline) for rel in step.inputs.paths}
    # Azure ML orders steps by their bindings alone: every step this one needs is mounted,
    # whether or not it reads that step's files, so no `needs:` edge is lost.
    mounts = {producer: producer for producer in [*step.needs, *producers.values()]}
    paths: dict[str, str] = {}
    for name, rel in step.inputs.params.items():
        paths[name] = f"${{{{inputs.{producers[rel]}}}}}/{rel}"
    for name, rel in step.outputs.params.items():
        paths[name] = f"${{{{outputs.run}}}}/{rel}"
    notebook = Path(step.notebook).resolve().relative_to(Path(project_dir).resolve()).as_posix()
    executed = f"${{{{outputs.run}}}}/notebooks/{step.name}.ipynb"
    lines = [
        "set -euo pipefail",
        "mkdir -p ${{outputs.run}}/notebooks ${{outputs.run}}/html",
        *(
            f"mkdir -p $(dirname ${{{{outputs.run}}}}/{rel})"
            for rel in step.outputs.paths
            if "." in Path(rel).name
        ),
        f"export PYTHONPATH={shlex.quote(':'.join(code_paths))} "
        f"NBMILL_RUN_ID={shlex.quote(run_id)} "
        f"NBMILL_STEP={step.name} NBMILL_PIPELINE={shlex.quote(pipeline.name)} "
        f"NBMILL_WHY={shlex.quote(why or '')} NBMILL_LEDGER=${{{{outputs.run}}}}/{STEP_LEDGER} "
        "NBMILL_RUN_DIR=${{outputs.run}} NBMILL_PROJECT_DIR=$PWD",
        " ".join(
            [
                "python -m papermill",
                shlex.quote(notebook),
                executed,
                "-y",
                shlex.quote(json.dumps(params, sort_keys=True)),
                *(f"-p {name} {value}" for name, value in sorted(paths.items())),
            ]
        ),
        f"python -m jupyter nbconvert --to html --output-dir ${{{{outputs.run}}}}/html {executed}",
    ]
    return "\n".join(lines), mounts


def pipeline_job(
    plan,
    settings: AzureSettings,
    run_id: str,
    project_dir: Path,
    why: str | None = None,
):
    """The Azure ML pipeline job of a planned run (``nbmill.pipeline.runner.plan``); ``why``:
    the run's reason. Its code is the project folder, uploaded as azure-ai-ml does (without
    what .amlignore names)."""
    ml = sdk()
    Input, Output, command, dsl = ml.Input, ml.Output, ml.command, ml.dsl
    pipeline = plan.pipeline
    env = environment(project_dir, settings)
    project_dir = Path(project_dir)

    @dsl.pipeline(
        name=pipeline.name,
        display_name=f"{pipeline.name} {run_id}",
        description=pipeline.description or pipeline.name,
        experiment_name=settings.experiment or pipeline.name,
        default_compute=settings.compute,
        tags={"nbmill.run_id": run_id, "nbmill.pipeline": pipeline.name},
    )
    def build():
        nodes: dict[str, Any] = {}
        for name in pipeline.order:
            step = pipeline.steps[name]
            script, mounts = step_command(
                step, plan.resolved.get(name, {}), pipeline, run_id, project_dir,
                plan.config.code_paths, why,
            )  # fmt: skip
            step_settings = plan.settings.get(name)
            timeout = step_settings.timeout if step_settings else None
            component = command(
                name=name,
                display_name=name,
                description=step.description or f"{pipeline.name}: {name}",
                command=script,
                code=str(project_dir),
                environment=env,
                inputs={producer: Input(type="uri_folder") for producer in mounts},
                outputs={"run": Output(type="uri_folder")},
                # Never reused: each command carries the run's id and reason, which Azure ML's
                # reuse would hash, and a reused step's outputs would come home under another
                # run's id, which assembling does not yet record as a cache hit.
                is_deterministic=False,
                timeout=int(timeout) if timeout else None,
            )
            # No local variable holds a node: the dsl names nodes after the variables they
            # are in, which would rename the last step.
            nodes[name] = component(
                **{producer: nodes[producer].outputs.run for producer in mounts}
            )
            nodes[name].name = name
            if settings.compute != "serverless":
                nodes[name].compute = settings.compute
            elif settings.instance_type:
                nodes[name].resources = {"instance_type": settings.instance_type}
        return {}

    return build()


CODE_LINE = re.compile(r"^(\s*code: )(/.*)$", re.MULTILINE)


def write(job, path: Path) -> Path:
    """The job as YAML at ``path``. The SDK writes each step's code folder as an absolute path;
    it is written relative to the file, so the file works wherever the project is cloned."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    job.dump(path)
    here = path.parent.resolve()
    text = path.read_text(encoding="utf-8")
    path.write_text(
        CODE_LINE.sub(lambda m: m.group(1) + os.path.relpath(m.group(2), here), text),
        encoding="utf-8",
    )
    return path


def validate(path: Path) -> list[str]:
    """Load the job YAML back with the SDK and run its own offline validation, then check the
    bindings it does not check offline: the messages of every error (none when valid)."""
    try:
        job = sdk().load_job(source=str(path))
    except Exception as exc:  # the SDK's loader names the field
        return sdk_errors(exc)
    result = job._validate()
    problems = [f"{where}: {message}" for where, message in result.error_messages.items()]
    return problems + binding_errors(yaml.safe_load(Path(path).read_text(encoding="utf-8")))


def sdk_errors(exc: Exception) -> list[str]:
    """The SDK's validation errors as ``path: message`` lines (its own text is a page)."""
    found = re.findall(r'"message": "(.*?)",\s*"path": "(.*?)"', str(exc), re.DOTALL)
    if found:
        return [f"{where}: {message}" for message, where in found]
    return [f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"]


def binding_errors(document: dict) -> list[str]:
    """Bindings the SDK accepts offline but the service would refuse: an input bound to a job
    that is not in the pipeline, and a command using an input or output it does not declare."""
    problems = []
    steps = document.get("jobs") or {}
    for name, step in steps.items():
        for input_name, value in (step.get("inputs") or {}).items():
            text = value.get("path", "") if isinstance(value, dict) else str(value)
            for job_name in re.findall(r"\$\{\{parent\.jobs\.([\w-]+)\.", text):
                if job_name not in steps:
                    problems.append(
                        f"jobs.{name}.inputs.{input_name}: bound to job '{job_name}', "
                        "which is not in the pipeline"
                    )
        component = step.get("component") or {}
        declared = {
            "inputs": set(component.get("inputs") or {}) | set(step.get("inputs") or {}),
            "outputs": set(component.get("outputs") or {}) | set(step.get("outputs") or {}),
        }
        for kind, used in re.findall(
            r"\$\{\{(inputs|outputs)\.([\w-]+)\}\}", component.get("command", "")
        ):
            if used not in declared[kind]:
                problems.append(
                    f"jobs.{name}.command: uses {kind}.{used}, which it does not declare"
                )
    return problems


def submit(job, workspace, downloads: Path, log=print):
    """Submit, stream until it ends, and download every step's ``run`` output under
    ``downloads``; returns the final status, the job's name, each step's final status, and
    each step's output folder."""
    client = workspace.client()
    created = client.jobs.create_or_update(job)
    log(f"submitted {created.name}: {created.studio_url}")
    try:
        client.jobs.stream(created.name)
    except Exception as exc:  # stream raises when the job fails: its status says how
        log(f"stream: {type(exc).__name__}: {exc}")
    status = client.jobs.get(created.name).status
    outputs, steps = {}, {}
    for child in client.jobs.list(parent_job_name=created.name):
        steps[child.display_name] = child.status
        where = downloads / child.display_name
        client.jobs.download(child.name, download_path=str(where), all=True)
        if (where / "named-outputs" / "run").is_dir():
            outputs[child.display_name] = where / "named-outputs" / "run"
    return status, created.name, steps, outputs
