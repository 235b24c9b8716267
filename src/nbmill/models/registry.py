"""The MLflow model registry: register a run's model with its provenance, fetch it back checked,
find a run's candidate, list versions.

The train step registers its model (``register_model``) with tags that tie the version to the
nbmill run that made it::

    nbmill.run_id            the nbmill run (runs/<run-id>/)
    nbmill.commit            the git commit the run ran at ("" when unknown)
    nbmill.data_sha256       sha256 of the training data file
    nbmill.environment       the run's environment fingerprint (run.json; "" outside a run)
    nbmill.artifacts_sha256  ``tree_digest`` of the version's files, as downloaded from its
                             artifact location; the run's ``model_dir`` is replaced by exactly
                             those files, so the run record, the deploy package and the
                             registry all hold one digest, which ``nbmill serve`` re-checks

A version fetched for reading (serving, traffic, monitoring) is downloaded into a temporary
folder that lives exactly as long as the caller's ``with`` block (``downloaded``,
``resolve_registered``). A cache reused across calls would save a download per start, but
would need its own eviction and locking between processes, and its files could change between
the check and the use; a model is small, and each start checks its files anyway.

This module imports MLflow (seconds), so only what needs the registry imports it; a notebook
that does has it preloaded by its warm kernel. The store is
``project.config.tracking_uri``: ``MLFLOW_TRACKING_URI`` if set, else the project's sqlite.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException

from nbmill import tracking
from nbmill._hashing import sha256_file, tree_digest
from nbmill._time import iso_from_timestamp
from nbmill.context import notifier as notifier_for
from nbmill.errors import NbmillError
from nbmill.governance.events import Notifier
from nbmill.models import store as st
from nbmill.models.aliases import subject, why
from nbmill.models.ref import parse_ref
from nbmill.records.provenance import git_info, who
from nbmill.records.runjson import MODEL


def run_provenance(data_path: str | Path, project_dir: Path | None = None) -> dict[str, str]:
    """The keyword arguments ``register_model`` needs from the current run, for a notebook:
    run id, git commit, the data file (and its sha256) and the environment fingerprint."""
    ctx = tracking.context()
    run = ctx.record()
    if run:
        commit = (run.get("git") or {}).get("commit")
    else:
        commit = git_info(Path(project_dir or ctx.project_dir))["commit"]
    return {
        "run_id": ctx.run_id,
        "commit": commit or "",
        "data_sha256": sha256_file(Path(data_path)),
        "environment_fingerprint": (run.get("environment") or {}).get("fingerprint", ""),
        "data_path": str(data_path),
    }


LOGGED_MODELS = (
    "MLflow 3's logged models (models:/<id>, what mlflow.<flavor>.log_model returns) are not "
    "implemented by Azure ML's tracking service; save the model with "
    "mlflow.<flavor>.save_model and log its folder with nbmill.models.log_model_files, then "
    "register the runs:/ URI that returns"
)


def log_model_files(model_dir: str | Path, artifact_path: str = "model") -> str:
    """Log a model saved in MLflow's format (``mlflow.<flavor>.save_model``) to the active
    MLflow run as plain artifacts; returns its ``runs:/<run-id>/<artifact_path>`` URI, for
    ``register_model``. Plain artifacts and ``runs:/`` sources work on any MLflow store, Azure
    ML's included; MLflow 3's logged models (``log_model``) do not work on Azure ML."""
    import mlflow

    model_dir = Path(model_dir)
    if not (model_dir / "MLmodel").is_file():
        raise NbmillError(f"{model_dir}: not a saved MLflow model (no MLmodel file in it)")
    active = mlflow.active_run()
    if active is None:
        raise NbmillError(
            "log_model_files: no active MLflow run; call it inside `with tracking.mlflow_run():`"
        )
    mlflow.log_artifacts(str(model_dir), artifact_path)
    return f"runs:/{active.info.run_id}/{artifact_path}"


def _source(model_uri: Any) -> tuple[str, str]:
    """(source URI, MLflow run id) of a ``runs:/<run-id>/<path>`` URI; NbmillError for
    anything else, MLflow 3's logged models first (Azure ML does not implement them)."""
    uri = getattr(model_uri, "model_uri", model_uri)
    if not isinstance(uri, str):
        raise NbmillError(f"register_model: expected a runs:/ model URI, got {uri!r}")
    if uri.startswith("models:/") or getattr(model_uri, "model_id", None):
        raise NbmillError(f"register_model: {uri}: {LOGGED_MODELS}")
    if not uri.startswith("runs:/") or "/" not in uri.removeprefix("runs:/"):
        raise NbmillError(
            f"register_model: {uri!r} is not a runs:/<run-id>/<path> URI "
            "(what nbmill.models.log_model_files returns)"
        )
    return uri, uri.removeprefix("runs:/").split("/", 1)[0]


def _create_version(store: st.Store, uri: str, name: str, tags: dict[str, str]):
    source, run_id = _source(uri)
    try:
        store.client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    # Tags one by one: Azure ML has refused them inside create_model_version (mlflow#8008).
    created = store.client.create_model_version(name, source, run_id=run_id)
    for key, value in tags.items():
        store.client.set_model_version_tag(name, str(created.version), key, value)
    return created


def register_model(
    model_uri: str,
    name: str,
    *,
    run_id: str,
    commit: str,
    data_sha256: str,
    environment_fingerprint: str,
    model_dir: str | Path,
    metrics: Mapping[str, float] | None = None,
    data_path: str | Path | None = None,
    project_dir: Path | None = None,
    notifier: Notifier | None = None,
) -> str:
    """Register a logged model as a new version of ``name``; returns the version.

    ``model_uri``: the ``runs:/`` URI ``log_model_files`` returned.
    ``model_dir`` (the run's model folder) is replaced by exactly the registered version's
    files, and their ``tree_digest`` is tagged ``nbmill.artifacts_sha256``. ``data_path``: the
    training data, logged with the version's MLflow run (``training_data/``) and named by the tag
    ``nbmill.data_file``, for monitoring's reference data. Emits
    ``nbmill.model.registered``.
    """
    st.check_name(name)
    store = st.Store.of(project_dir)
    tags = {
        st.TAG_RUN_ID: run_id,
        st.TAG_COMMIT: commit or "",
        st.TAG_DATA: data_sha256,
        st.TAG_ENVIRONMENT: environment_fingerprint or "",
    }
    registered = _create_version(store, model_uri, name, tags)
    version = str(registered.version)
    digest = _replace_with_version(store, name, version, Path(model_dir))
    tracking.record_product(MODEL, model_dir)
    store.client.set_model_version_tag(name, version, st.TAG_ARTIFACTS, digest)
    if data_path is not None and registered.run_id:
        # The training data travels with the model's MLflow run: monitoring registers it as
        # its reference data from there, wherever the run's folder is not at hand.
        store.client.log_artifact(registered.run_id, str(data_path), st.TRAINING_DATA)
        file = f"{st.TRAINING_DATA}/{Path(data_path).name}"
        store.client.set_model_version_tag(name, version, st.TAG_DATA_FILE, file)
    data = {
        "model": name,
        "version": version,
        "run_id": run_id,
        "who": who(),
        "why": why(None),
        "artifacts_sha256": digest,
        "commit": commit or "",
        "data_sha256": data_sha256,
        "environment": environment_fingerprint or "",
        "mlflow_run_id": registered.run_id or None,
        "source": registered.source,
    }
    if metrics:
        data["metrics"] = {k: float(v) for k, v in metrics.items()}
    with notifier_for(st.project(project_dir), notifier) as emit:
        emit.emit("nbmill.model.registered", subject(name, version), data)
    return version


def _replace_with_version(store: st.Store, name: str, version: str, model_dir: Path) -> str:
    """Replace ``model_dir`` by the registered version's files; returns their digest.

    The files go to a temporary sibling first (same filesystem, so the swap is two renames),
    and only a complete download replaces the step's output: a failed one leaves it as it was.
    """
    fresh = _sibling(model_dir, "partial")
    fresh.mkdir(parents=True)
    try:
        _download_complete(store, name, version, fresh, model_dir)
        digest = tree_digest(fresh)
        _swap_in(fresh, model_dir)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    return digest


def _download_complete(
    store: st.Store, name: str, version: str, dst: Path, model_dir: Path
) -> None:
    """Download the version into ``dst``; NbmillError unless that gives a model (MLflow
    downloads nothing, quietly, from an artifact location that lost its files)."""
    problem = None
    try:
        store.download(name, version, dst)
    except (MlflowException, OSError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if problem is None and not (dst / "MLmodel").is_file():
        problem = "its artifact location holds no MLmodel"
    if problem:
        raise NbmillError(
            f"model '{name}' version {version}: downloading its files failed ({problem}); "
            f"{model_dir} was left as it was. Check the MLflow store and register the model again"
        )


def _swap_in(fresh: Path, model_dir: Path) -> None:
    """Put ``fresh`` in the place of ``model_dir``, then remove the old files. If the second
    rename fails, the old files go back."""
    if not model_dir.exists():
        fresh.rename(model_dir)
        return
    old = _sibling(model_dir, "old")
    model_dir.rename(old)
    try:
        fresh.rename(model_dir)
    except OSError:
        old.rename(model_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _sibling(folder: Path, kind: str) -> Path:
    """A new name beside ``folder``: hidden, on the same filesystem, used by no one else."""
    return folder.with_name(f".{folder.name}.{kind}-{secrets.token_hex(6)}")


def fetch(name: str, version: str | int, dst: str | Path, project_dir: Path | None = None) -> Path:
    """Download a version's files into ``dst`` (the caller's folder, replaced if it exists)
    and check them against the version's ``nbmill.artifacts_sha256`` tag; returns ``dst``."""
    store = st.Store.of(project_dir)
    found = st.version(store, name, version)
    return download_version(store, found, dst)


@contextmanager
def downloaded(store: st.Store, found: Any) -> Iterator[Path]:
    """The version's checked files in a temporary folder, removed when the block ends."""
    with tempfile.TemporaryDirectory(prefix="nbmill-model-") as scratch:
        yield download_version(store, found, Path(scratch) / "model")


def download_version(store: st.Store, found: Any, dst: str | Path) -> Path:
    """Download the version's files into ``dst`` (replaced if it exists) and check their
    digest against the one recorded at registration; returns ``dst``."""
    name, version = found.name, str(found.version)
    target = Path(dst)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    store.download(name, version, target)
    expected = (found.tags or {}).get(st.TAG_ARTIFACTS)
    actual = tree_digest(target)
    if expected and actual != expected:
        raise NbmillError(
            f"model '{name}' version {version}: its files have sha256 {actual[:16]}…, but "
            f"{expected[:16]}… was recorded when it was registered; the artifacts changed"
        )
    return target


def find_candidate(name: str, model_dir: str | Path, project_dir: Path | None = None):
    """The version (an MLflow ModelVersion) of ``name`` whose registered files are exactly
    those in ``model_dir``."""
    store = st.Store.of(project_dir)
    digest = tree_digest(Path(model_dir))
    found = st.versions(store, name, {st.TAG_ARTIFACTS: digest})
    if not found:
        st.registered(store, name)  # no such model: say so first
        raise NbmillError(
            f"{model_dir}: no version of model '{name}' has these files (sha256 {digest[:16]}…); "
            "the train step registers its model with nbmill.models.register_model"
        )
    latest = found[-1]
    return store.client.get_model_version(name, str(latest.version))


def list_models(
    name: str | None = None,
    *,
    metric_names: Sequence[str] | None = None,
    project_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """One row per version, each model's newest first: name, version, aliases, nbmill run id,
    MLflow run id, created, commit, artifacts sha256, gate reason, and the metrics of the MLflow
    run that logged it (all of them, or ``metric_names`` such as ``evaluate.test_r2``)."""
    store = st.Store.of(project_dir)
    names = [name] if name else [m.name for m in st.all_models(store)]
    models = [st.registered(store, n) for n in names]
    runs: dict[str, dict[str, float]] = {}
    rows = []
    for model in sorted(models, key=lambda m: m.name):
        aliases: dict[str, list[str]] = {}
        for alias, version in st.aliases_of(model).items():
            aliases.setdefault(version, []).append(alias)
        for found in reversed(model.versions):
            run = found.run_id or ""
            if run and run not in runs:
                try:
                    runs[run] = dict(store.client.get_run(run).data.metrics)
                except MlflowException:  # the run was deleted: the version still lists
                    runs[run] = {}
            metrics = runs.get(run, {})
            if metric_names is not None:
                metrics = {k: metrics[k] for k in metric_names if k in metrics}
            tags = found.tags or {}
            version = str(found.version)
            rows.append(
                {
                    "name": model.name,
                    "version": version,
                    "aliases": sorted(aliases.get(version, [])),
                    "run_id": tags.get(st.TAG_RUN_ID),
                    "mlflow_run_id": run or None,
                    "created": iso_from_timestamp(found.creation_timestamp / 1000),
                    "commit": tags.get(st.TAG_COMMIT),
                    "artifacts_sha256": tags.get(st.TAG_ARTIFACTS),
                    "gate": tags.get(st.TAG_GATE_REASON),
                    "metrics": metrics,
                }
            )
    return rows


@contextmanager
def resolve_registered(
    ref: str, project_dir: Path
) -> Iterator[tuple[Path, str | None, dict[str, Any]]]:
    """``NAME@ALIAS`` or ``NAME/VERSION`` (``models:/`` optional) for ``nbmill serve``: the
    downloaded model folder, the sha256 it must have, and its identity for /health. The folder
    exists inside the ``with`` block only."""
    store = st.Store.of(Path(project_dir))
    parsed, version = st.resolve(store, ref)
    name, alias = parsed.name, parsed.alias
    found = st.version(store, name, version)
    expected = (found.tags or {}).get(st.TAG_ARTIFACTS)
    identity = {
        "model": name,
        "version": str(version),
        "alias": alias,
        "run_id": (found.tags or {}).get(st.TAG_RUN_ID),
    }
    with downloaded(store, found) as folder:
        yield folder, expected, identity


def describe(ref: str, project_dir: Path | None = None) -> dict[str, Any]:
    """One registered version, ``NAME/VERSION`` or ``NAME@ALIAS``: its row of ``list_models``
    (aliases, nbmill run, commit, sha256, gate reason, metrics). NbmillError naming the versions
    held when there is no such version."""
    parsed = parse_ref(ref)
    rows = list_models(parsed.name, project_dir=project_dir)
    for row in rows:
        if row["version"] == parsed.version or parsed.alias in row["aliases"]:
            return row
    held = ", ".join(f"{r['version']} ({','.join(r['aliases']) or 'no alias'})" for r in rows)
    raise NbmillError(f"{ref}: no such version (versions: {held or 'none'})")
