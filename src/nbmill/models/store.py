"""The MLflow registry as nbmill reads it: a client on the project's store, and lookups that
fail with errors naming what exists.

No function here touches MLflow's process-wide tracking URI: every call goes through a client
made for one store (``project.config.tracking_uri``), so a notebook's own MLflow settings and
the registry nbmill writes to never leak into each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

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
TAG_DATA_FILE = "nbmill.data_file"  # the training data, among the version's run's artifacts
TRAINING_DATA = "training_data"  # where it is logged
TAG_GATE_PROMOTED = "nbmill.gate.promoted"
TAG_GATE_REASON = "nbmill.gate.reason"
MISSING = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
# An alias is a tag of the version holding it, ``nbmill.alias.<alias>`` = when it moved there.
# Azure ML's MLflow registry implements version tags, but neither MLflow's aliases nor tags on
# a registered model nor a search by tag: so nbmill uses version tags on every store (one code
# path), lists a model's versions by name, and the ledger keeps every move.
ALIAS_TAG = "nbmill.alias."


def alias_tag(alias: str) -> str:
    return ALIAS_TAG + alias


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
        resolve through the process-wide registry URI, and its ``runs:/`` repository searches
        MLflow 3's logged models, which Azure ML does not implement: so a ``runs:/`` source is
        resolved here to the run's own artifact location, and downloaded from there.)"""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        source = self.client.get_model_version_download_uri(name, str(version))
        if source.startswith("runs:/"):
            run_id, _, path = source.removeprefix("runs:/").partition("/")
            root = self.client.get_run(run_id).info.artifact_uri.rstrip("/")
            source = f"{root}/{path}" if path else root
        repository = get_artifact_repository(source, tracking_uri=self.uri, registry_uri=self.uri)
        with environ({"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}):
            repository.download_artifacts("", dst_path=str(dst))
        return Path(dst)

    def download_run_file(self, run_id: str, path: str, dst: Path) -> Path:
        """One artifact of an MLflow run, from the run's own artifact location (not ``runs:/``,
        whose repository searches MLflow 3's logged models); returns the local file."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        root = self.client.get_run(run_id).info.artifact_uri
        Path(dst).mkdir(parents=True, exist_ok=True)
        repository = get_artifact_repository(root, tracking_uri=self.uri, registry_uri=self.uri)
        with environ({"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}):
            return Path(repository.download_artifacts(path, dst_path=str(dst)))


def project(project_dir: Path | None) -> Path:
    return Path(project_dir).resolve() if project_dir else tracking.context().project_dir


def check_name(name: str) -> None:
    if not name or "'" in name or "`" in name:
        raise NbmillError(f"model name {name!r}: must be non-empty, without quotes or backticks")


@dataclass(frozen=True)
class Registered:
    """A registered model as nbmill reads it: its versions (oldest first, each with its tags)
    and, from their tags, which version holds each alias."""

    name: str
    versions: list  # MLflow ModelVersions

    @property
    def aliases(self) -> dict[str, str]:
        """alias -> version: the version whose ``nbmill.alias.<alias>`` tag is the newest
        (a move interrupted between its two writes leaves the old holder's tag older)."""
        held: dict[str, tuple[str, tuple[int, str], str]] = {}
        for found in self.versions:
            number = str(found.version)
            for key, moved_at in (found.tags or {}).items():
                if key.startswith(ALIAS_TAG):
                    alias, rank = key.removeprefix(ALIAS_TAG), (moved_at, version_key(number))
                    if alias not in held or rank > held[alias][:2]:
                        held[alias] = (*rank, number)
        return {alias: entry[-1] for alias, entry in sorted(held.items())}

    def holders(self, alias: str) -> list[str]:
        """Every version tagged with ``alias`` (one, unless a move was interrupted)."""
        return [str(v.version) for v in self.versions if alias_tag(alias) in (v.tags or {})]


def registered(store: Store, name: str) -> Registered:
    """The registered model and its versions, or NbmillError naming those there are."""
    check_name(name)
    found = versions(store, name)
    if found:
        return Registered(name, found)
    try:
        store.client.get_registered_model(name)
        return Registered(name, [])
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


def versions(store: Store, name: str, tags: Mapping[str, str] | None = None) -> list:
    """Every version of ``name`` (with each of ``tags``), oldest first. Searched by name only
    and filtered here: Azure ML's registry does not search by tag."""
    found, token = [], None
    while True:
        page = store.client.search_model_versions(
            f"name='{name}'", max_results=1000, page_token=token
        )
        found.extend(page)
        token = page.token
        if not token:
            break
    wanted = dict(tags or {})
    found = [v for v in found if wanted.items() <= (v.tags or {}).items()]
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


def aliases_of(model: Registered) -> dict[str, str]:
    """alias -> version of a registered model (as ``registered`` returns it)."""
    return model.aliases


def aliases_of_version(model: Registered, version: str | int) -> list[str]:
    """The aliases a version of the registered model holds, sorted."""
    return sorted(a for a, v in model.aliases.items() if v == str(version))


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
