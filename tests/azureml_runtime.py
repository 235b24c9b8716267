"""Azure ML's job runtime, offline: what the service does with the pipeline job file nbmill writes.

- the code snapshot is built as azure-ai-ml uploads it (its own ignore-file logic: .amlignore,
  else .gitignore, at the project's root);
- the environment is built from the job's own environment definition (its conda file's pip list,
  on this machine's Python when the conda file asks for the same minor version);
- each step's command runs in bash from the snapshot, its ``${{inputs.*}}`` bound to the folders
  its producers wrote and ``${{outputs.run}}`` to a fresh one, with the variables Azure ML sets in
  a job (``MLFLOW_TRACKING_URI``, ``MLFLOW_EXPERIMENT_NAME``/``_ID``, ``MLFLOW_RUN_ID`` for an
  MLflow run of the step's own, ``AZUREML_RUN_ID``);
- a step starts once every binding it has is ready, and nothing else orders steps (as in Azure
  ML): among ready steps the *latest* declared goes first, so a dependency missing from the
  bindings shows as a step running before the one it needs;
- outputs are laid out as ``jobs.download(all=True)`` leaves them
  (``<step>/named-outputs/run``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.conftest import ROOT

BINDING = re.compile(r"\$\{\{(inputs|outputs)\.(\w+)\}\}")
PARENT_OUTPUT = re.compile(r"^\$\{\{parent\.jobs\.(\w+)\.outputs\.(\w+)\}\}$")


@dataclass
class JobRun:
    status: str  # Completed or Failed, as Azure ML says it
    order: list[str] = field(default_factory=list)  # the steps, in the order they started
    outputs: dict[str, Path] = field(default_factory=dict)  # step -> downloaded run output
    statuses: dict[str, str] = field(default_factory=dict)  # step -> its job's final status
    logs: dict[str, str] = field(default_factory=dict)  # step -> its std_log
    mlflow_runs: dict[str, str] = field(default_factory=dict)  # step -> its MLflow run id


def snapshot(project: Path, into: Path) -> Path:
    """The code snapshot azure-ai-ml would upload for ``code: project``."""
    from azure.ai.ml._utils._asset_utils import get_ignore_file, get_upload_files_from_folder

    ignore = get_ignore_file(project)
    for local, remote in get_upload_files_from_folder(project, ignore_file=ignore):
        target = into / remote
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(local, target)
    return into


def uv() -> str:
    found = ROOT / ".tools" / "bin" / "uv"
    return str(found) if found.exists() else (shutil.which("uv") or "uv")


def environment(conda_file: dict, into: Path) -> Path:
    """A virtual environment from a job's conda file: its python version, its pip list."""
    deps = conda_file["dependencies"]
    (python,) = [d for d in deps if isinstance(d, str) and d.startswith("python=")]
    wanted = python.split("=", 1)[1]
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert wanted == here, f"the job asks for Python {wanted}; this machine has {here}"
    (pip,) = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    subprocess.run([uv(), "venv", "-q", "--python", sys.executable, str(into)], check=True)
    subprocess.run(
        [uv(), "pip", "install", "-q", "--python", str(into / "bin" / "python"), *pip],
        check=True,
        timeout=900,
    )
    return into


def bind(command: str, inputs: dict[str, Path], outputs: dict[str, Path]) -> str:
    """The command with each ``${{inputs.X}}``/``${{outputs.X}}`` replaced by its folder; a
    binding the job does not declare is an error, as Azure ML's is."""

    def folder(match: re.Match) -> str:
        kind, name = match.groups()
        declared = inputs if kind == "inputs" else outputs
        if name not in declared:
            raise AssertionError(f"the command uses ${{{{{kind}.{name}}}}}, which is not bound")
        return str(declared[name])

    return BINDING.sub(folder, command)


def producers(node: dict) -> dict[str, str]:
    """A node's inputs: input name -> the step whose output it binds."""
    found = {}
    for name, spec in (node.get("inputs") or {}).items():
        match = PARENT_OUTPUT.match(str(spec.get("path", "")))
        assert match, f"input {name} is not bound to a step's output: {spec}"
        found[name] = match.group(1)
    return found


def run_job(job_file: Path, code: Path, env_dir: Path, work: Path, tracking_uri: str) -> JobRun:
    """Run the pipeline job ``job_file`` as Azure ML would, from the snapshot ``code`` in the
    environment ``env_dir``; step folders and downloads under ``work``."""
    from mlflow.tracking import MlflowClient

    document = yaml.safe_load(job_file.read_text())
    nodes: dict[str, dict] = document["jobs"]
    declared = list(nodes)
    mlflow = MlflowClient(tracking_uri)
    experiment = document["experiment_name"]
    found = mlflow.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else mlflow.create_experiment(experiment)
    result = JobRun("Completed")
    done: set[str] = set()
    failed: set[str] = set()
    while len(done) + len(failed) < len(nodes):
        ready = [
            name
            for name in reversed(declared)
            if name not in done | failed and set(producers(nodes[name]).values()) <= done
        ]
        if not ready:
            break  # what is left waits on a step that failed: Azure ML does not start it
        name = ready[0]
        result.order.append(name)
        node = nodes[name]
        out = work / "azureml" / name / "outputs" / "run"
        out.mkdir(parents=True)
        inputs = {key: result.outputs[step] for key, step in producers(node).items()}
        script = bind(node["component"]["command"], inputs, {"run": out})
        mlflow_run = mlflow.create_run(experiment_id, run_name=name)
        run_id = mlflow_run.info.run_id
        result.mlflow_runs[name] = run_id
        env = {
            "PATH": f"{env_dir / 'bin'}:{os.environ['PATH']}",
            "HOME": os.environ.get("HOME", str(work)),
            "VIRTUAL_ENV": str(env_dir),
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MLFLOW_EXPERIMENT_NAME": experiment,
            "MLFLOW_EXPERIMENT_ID": experiment_id,
            "MLFLOW_RUN_ID": run_id,
            "AZUREML_RUN_ID": f"{name}-{run_id[:8]}",
        }
        done_step = subprocess.run(
            ["bash", "-c", script],
            cwd=code,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        result.logs[name] = done_step.stdout + done_step.stderr
        mlflow.set_terminated(run_id, "FINISHED" if done_step.returncode == 0 else "FAILED")
        downloaded = work / "downloads" / name / "named-outputs" / "run"
        shutil.copytree(out, downloaded)
        result.outputs[name] = downloaded
        result.statuses[name] = "Completed" if done_step.returncode == 0 else "Failed"
        (done if done_step.returncode == 0 else failed).add(name)
    if len(done) < len(nodes):
        result.status = "Failed"
    return result
