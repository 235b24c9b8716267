"""Start-up: resolve the model, verify its files once, read its signature once, then run uvicorn.

The parent process does every check (the sha256 of the model's files against what was recorded
at registration or in the package manifest, the MLmodel signature, the key) and hands the
result to each worker in the environment; a worker only loads the model.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nbmill._hashing import digest_of, tree_digest
from nbmill.errors import NbmillError
from nbmill.serving.app import ScoringApp
from nbmill.serving.collect import Collector, Deployment
from nbmill.serving.metrics import MULTIPROC_ENV
from nbmill.serving.request import Signature, read_mlmodel

ENV_CONFIG = "NBMILL_SERVE_CONFIG"
ENV_KEY = "NBMILL_SERVE_KEY"
MODEL = "model/"


@dataclass(frozen=True)
class ServeConfig:
    """Everything a worker needs, checked by the parent: JSON in the environment."""

    model_dir: str
    sha256: str
    identity: dict[str, Any]
    key: str
    collect_dir: str | None
    columns: tuple[str, ...]
    types: tuple[str, ...]
    sklearn: dict[str, Any] | None  # the MLmodel's sklearn flavor, if it has one
    key_source: str
    endpoint: str = "local"
    deployment: str = "local"

    @property
    def signature(self) -> Signature:
        return Signature(tuple(self.columns), tuple(self.types))


def resolve_model(ref: str, project_dir: Path) -> tuple[Path, str, dict[str, Any]]:
    """A package folder, an MLflow model folder, or NAME@ALIAS / NAME/VERSION from the MLflow
    registry: returns (model folder, the sha256 of its files, identity for /health). The files
    are hashed once, and checked against what was recorded for them where anything was."""
    path = Path(ref)
    if path.is_dir():
        from nbmill.models.package import MANIFEST, verify_package

        if (path / MANIFEST).exists():  # a package made by the deploy step
            manifest = verify_package(path)  # every file against the manifest
            model = {
                rel.removeprefix(MODEL): digest
                for rel, digest in manifest["files"].items()
                if rel.startswith(MODEL)
            }
            digest = digest_of(model)
            if digest != manifest.get("model_sha256"):
                raise NbmillError(
                    f"{path / MANIFEST}: model_sha256 does not match the model's files listed "
                    "in the manifest; the package was changed"
                )
            model = manifest.get("model") or {}
            identity = {"model": model.get("name") or str(path), "version": model.get("version")}
            return path / "model", digest, {**identity, "package": str(path)}
        if (path / "MLmodel").exists():
            return path, tree_digest(path), {"model": str(path)}
        raise NbmillError(f"{path}: neither a package (package.json) nor an MLflow model (MLmodel)")
    from nbmill.models.registry import resolve_registered  # imports MLflow: registry refs only

    folder, expected, identity = resolve_registered(ref, project_dir)
    return folder, expected or tree_digest(folder), identity


def load_key(project_dir: Path) -> tuple[str, str]:
    """The key from NBMILL_SERVE_KEY, else from (or generated into) .nbmill/serve.key."""
    key = os.environ.get(ENV_KEY)
    if key:
        return key, ENV_KEY
    path = project_dir / ".nbmill" / "serve.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text(encoding="utf-8").strip(), str(path)


NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def _check_name(kind: str, name: str) -> str:
    if not NAME.match(name):
        raise NbmillError(
            f"{kind} name {name!r}: use letters, digits, '-', '_' and '.' (up to 63), "
            f"starting with a letter or digit"
        )
    return name


def prepare(
    ref: str,
    project_dir: Path,
    collect_dir: Path | None = None,
    endpoint: str | None = None,
    deployment: str = "local",
) -> ServeConfig:
    """Resolve and check the model, read its signature and the key: what every worker gets.
    Collected data goes to ``collect_dir/<endpoint>/<deployment>/...`` (the endpoint is the
    model's registered name unless given)."""
    model_dir, digest, identity = resolve_model(ref, project_dir)
    if endpoint is None:
        named = identity.get("model", "")
        endpoint = named if NAME.match(named) else Path(model_dir).resolve().parent.name
        endpoint = endpoint if NAME.match(endpoint) else "local"
    mlmodel = read_mlmodel(model_dir)
    signature = Signature.from_mlmodel(mlmodel, model_dir)
    key, key_source = load_key(project_dir)
    return ServeConfig(
        model_dir=str(Path(model_dir).resolve()),
        sha256=digest,
        identity={**identity, "sha256": digest},
        key=key,
        collect_dir=str(collect_dir) if collect_dir else None,
        columns=signature.columns,
        types=signature.types,
        sklearn=(mlmodel.get("flavors") or {}).get("sklearn"),
        key_source=key_source,
        endpoint=_check_name("endpoint", endpoint),
        deployment=_check_name("deployment", deployment),
    )


def build_app(config: ServeConfig) -> ScoringApp:
    """The app for one worker: load the model (checked by the parent) and open the collector."""
    collector = None
    if config.collect_dir:
        identity = config.identity
        where = Deployment(
            config.endpoint,
            config.deployment,
            tuple(config.columns),
            model_name=identity.get("model"),
            model_version=identity.get("version"),
            model_alias=identity.get("alias"),
        )
        collector = Collector(Path(config.collect_dir), where)
    model = _load(Path(config.model_dir), config)
    return ScoringApp(model, config.signature, config.key, collector, config.identity)


def create_app() -> ScoringApp:
    """uvicorn's factory, in each worker: the config the parent put in the environment."""
    raw = json.loads(os.environ[ENV_CONFIG])
    return build_app(ServeConfig(**raw))


def _load(model_dir: Path, config: ServeConfig):
    """The raw sklearn model when there is one (fast, numeric matrices), else the pyfunc.

    A model saved in skops' format is loaded as MLflow loads it (``skops.io.load`` with the
    trusted types its MLmodel names) without importing MLflow, which saves seconds of start-up;
    the files were checked against their recorded sha256 first. Other formats go through
    MLflow, with its own safeguards."""
    if config.sklearn is not None:
        flavor = config.sklearn
        if flavor.get("serialization_format") == "skops" and flavor.get("pickled_model"):
            import skops.io

            path = model_dir / flavor["pickled_model"]
            return skops.io.load(path, trusted=flavor.get("skops_trusted_types"))
        import mlflow.sklearn

        return mlflow.sklearn.load_model(str(model_dir))
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(str(model_dir))
    columns = list(config.columns)

    class Frame:
        def predict(self, matrix):
            import pandas as pd

            return np.asarray(model.predict(pd.DataFrame(matrix, columns=columns)))

    return Frame()


def serve(
    ref: str,
    project_dir: Path,
    host: str = "127.0.0.1",
    port: int = 5001,
    workers: int = 1,
    collect_dir: Path | None = None,
    announce: Callable[[str], None] = print,
    endpoint: str | None = None,
    deployment: str = "local",
) -> None:
    """Check the model, then run the service until SIGTERM or Ctrl-C."""
    import uvicorn

    config = prepare(ref, project_dir, collect_dir, endpoint, deployment)
    os.environ[ENV_CONFIG] = json.dumps(asdict(config))
    shared = None
    if workers > 1 and not os.environ.get(MULTIPROC_ENV):  # /metrics sums every worker
        shared = tempfile.mkdtemp(prefix="nbmill-metrics-")
        os.environ[MULTIPROC_ENV] = shared
    announce(
        f"serving {config.identity.get('model')} (sha256 {config.sha256[:12]}) "
        f"on http://{host}:{port}"
    )
    where = Path(collect_dir) / config.endpoint / config.deployment if collect_dir else "nowhere"
    announce(f"key: from {config.key_source}; collecting to {where}")
    try:
        uvicorn.run(
            "nbmill.serving.startup:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
    finally:
        if shared:
            shutil.rmtree(shared, ignore_errors=True)
