"""The MLflow registry as nbmill reads it: a client on the project's store, and lookups that
fail with errors naming what exists.

No function here touches MLflow's process-wide tracking URI: every call goes through a client
made for one store (``project.config.tracking_uri``), so a notebook's own MLflow settings and
the registry nbmill writes to never leak into each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from nbmill import tracking
from nbmill._environ import environ
from nbmill.errors import NbmillError
from nbmill.models.ref import ModelRef, parse_ref
from nbmill.project.config import tracking_uri

TAG_RUN_ID = tracking.RUN_ID_TAG  # "nbmill.run_id", as on the MLflow run
TAG_COMMIT = "nbmill.commit"
TAG_DATA = "nbmill.data_sha256"
TAG_ENVIRONMENT = "nbmill.environment"
TAG_ARTIFACTS = "nbmill.artifacts_sha256"
TAG_GATE_PROMOTED = "nbmill.gate.promoted"
TAG_GATE_REASON = "nbmill.gate.reason"
MISSING = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


@dataclass(frozen=True)
class Store:
    """One MLflow store (tracking and registry at the same URI) and its client."""

    uri: str
    client: MlflowClient

    @classmethod
    def of(cls, project_dir: Path | None = None) -> Store:
        uri = tracking_uri(project(project_dir))
        return cls(uri, MlflowClient(tracking_uri=uri, registry_uri=uri))

    def download(self, name: str, version: str, dst: Path) -> Path:
        """Download a version's files into ``dst``, quietly. (MLflow's ``models:/`` URIs would
        resolve through the process-wide registry URI, so the version's own artifact location
        is asked of this store's client and downloaded from there.)"""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        source = self.client.get_model_version_download_uri(name, str(version))
        repository = get_artifact_repository(source, tracking_uri=self.uri, registry_uri=self.uri)
        with environ({"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}):
            repository.download_artifacts("", dst_path=str(dst))
        return Path(dst)


def project(project_dir: Path | None) -> Path:
    return Path(project_dir).resolve() if project_dir else tracking.context().project_dir


def check_name(name: str) -> None:
    if not name or "'" in name or "`" in name:
        raise NbmillError(f"model name {name!r}: must be non-empty, without quotes or backticks")


def registered(store: Store, name: str):
    """The registered model (with its aliases and tags), or NbmillError naming those there are."""
    check_name(name)
    try:
        return store.client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
    names = sorted(m.name for m in all_models(store))
    raise NbmillError(
        f"no registered model '{name}' (registered models: {', '.join(names) or 'none'})"
    )


def all_models(store: Store) -> list:
    models, token = [], None
    while True:
        page = store.client.search_registered_models(max_results=100, page_token=token)
        models.extend(page)
        token = page.token
        if not token:
            return models


def versions(store: Store, name: str, filter_string: str | None = None) -> list:
    """Every version of ``name`` (matching ``filter_string``), oldest first."""
    query = f"name='{name}'" + (f" and {filter_string}" if filter_string else "")
    found, token = [], None
    while True:
        page = store.client.search_model_versions(query, max_results=1000, page_token=token)
        found.extend(page)
        token = page.token
        if not token:
            return sorted(found, key=lambda v: version_key(str(v.version)))


def version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (-1, version)


def version(store: Store, name: str, number: str | int):
    """The model version, or NbmillError naming the model and listing its versions."""
    check_name(name)
    try:
        return store.client.get_model_version(name, str(number))
    except MlflowException as exc:
        if exc.error_code not in MISSING:
            raise
    registered(store, name)  # no such model: say so, with the models there are
    existing = [str(v.version) for v in versions(store, name)]
    raise NbmillError(
        f"model '{name}' has no version {number} (versions: {', '.join(existing) or 'none'})"
    )


def exists(store: Store, name: str, number: str) -> bool:
    """Whether the version exists; any other failure of the store is raised, not guessed at."""
    try:
        store.client.get_model_version(name, number)
    except MlflowException as exc:
        if exc.error_code in MISSING:
            return False
        raise
    return True


def aliases_of(model: Any) -> dict[str, str]:
    """alias -> version of a registered model (as ``registered`` returns it)."""
    return {alias: str(v) for alias, v in (model.aliases or {}).items()}


def resolve(store: Store, text: str) -> tuple[ModelRef, str]:
    """``NAME@ALIAS`` or ``NAME/VERSION`` (``models:/`` optional): the reference and its
    version number; NbmillError when the alias is not set."""
    ref = parse_ref(text)
    if ref.alias is None:
        return ref, str(ref.version)
    version = aliases_of(registered(store, ref.name)).get(ref.alias)
    if version is None:
        raise NbmillError(f"model '{ref.name}' has no version with alias '{ref.alias}'")
    return ref, str(version)
