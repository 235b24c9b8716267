"""One Azure ML Environment for every job and deployment: the project's environment.yml, on an
Azure ML base image, plus Azure ML's MLflow plugin so that the workspace is the tracking store."""

from __future__ import annotations

from pathlib import Path

import yaml

from nbmill.azure.settings import AzureSettings
from nbmill.errors import NbmillError

# Azure ML's MLflow plugin (azureml:// tracking URIs), as uv.lock pins it in the azure group
# (the newest release that allows the locked mlflow-skinny; tests/test_environment.py checks
# that the two agree): jobs and deployments get the same plugin as `make setup-azure`.
AZUREML_MLFLOW = "azureml-mlflow==1.60.0"


def conda_spec(project_dir: Path) -> dict:
    """environment.yml, with the MLflow plugin added to its pip list."""
    path = Path(project_dir) / "environment.yml"
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NbmillError(
            f"{path}: not found; write it with `python -m nbmill.project.environment`"
        ) from None
    for entry in spec.get("dependencies", []):
        if isinstance(entry, dict) and "pip" in entry:
            pins = [p for p in entry["pip"] if not p.startswith("azureml-mlflow")]
            entry["pip"] = [*pins, AZUREML_MLFLOW]
            return spec
    raise NbmillError(f"{path}: no pip section in its dependencies")


def environment(project_dir: Path, settings: AzureSettings):
    from azure.ai.ml.entities import Environment

    # Anonymous: Azure ML names it by its content, so it is built once and reused after.
    return Environment(
        description="nbmill: environment.yml (from uv.lock) on an Azure ML base image",
        image=settings.image,
        conda_file=conda_spec(project_dir),
    )
