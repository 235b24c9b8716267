"""Start-up: resolve the model, verify its files once, read its signature once, then run uvicorn.

The parent process does every check (the sha256 of the model's files against what was recorded
at registration or in the package manifest, the MLmodel signature, the key) and hands the
result to each worker in the environment; a worker only loads the model. What serving sets up
lasts as long as it serves: a registered model's download, the environment the workers read,
and the multiprocess metrics folder are all gone, or as they were, once ``serve`` returns.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nbmill._environ import environ
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
    follow: bool = False  # switch when the alias moves (follow.py)
    project_dir: str | None = None  # where the registry and the ledger are
    ledger: str | None = None  # the ledger followed

    @property
    def signature(self) -> Signature:
        return Signature(tuple(self.columns), tuple(self.types))


@contextmanager
def resolve_model(ref: str, project_dir: Path) -> Iterator[tuple[Path, str, dict[str, Any]]]:
    """A package folder, an MLflow model folder, or NAME@ALIAS / NAME/VERSION from the MLflow
    registry: yields (model folder, the sha256 of its files, identity for /health). The files
    are hashed once, and checked against what was recorded for them where anything was. A
    registered model is downloaded for the ``with`` block only."""
    path = Path(ref)
    if path.is_dir():
        yield _local_model(path)
        return
    from nbmill.models.registry import resolve_registered  # imports MLflow: registry refs only

    with resolve_registered(ref, project_dir) as (folder, expected, identity):
        yield folder, expected or tree_digest(folder), identity


def _local_model(path: Path) -> tuple[Path, str, dict[str, Any]]:
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


def load_key(project_dir: Path) -> tuple[str, str]:
    """The key from NBMILL_SERVE_KEY, else from (or generated into) .nbmill/serve.key."""
    key = os.environ.get(ENV_KEY)
    if key:
        return key, ENV_KEY
    path = project_dir / ".nbmill" / "serve.key"
    if not path.exists():
        _create_key(path)
    key = path.read_text(encoding="utf-8").strip()
    if not key:
        raise NbmillError(f"{path}: the key file is empty; delete it and a new key is made")
    return key, str(path)


def _create_key(path: Path) -> None:
    """Write a new key to ``path`` unless another start made one first (then that one is kept).

    The key is written in full to a private temporary file, then linked to ``path``: a link
    never replaces a file, and the key file appears whole, so two first starts at once agree on
    one key and neither reads a half-written one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:  # mkstemp makes it 0600
            handle.write(secrets.token_urlsafe(32) + "\n")
        os.link(tmp, path)
    except FileExistsError:
        pass  # another start made the key first: everyone uses that one
    finally:
        os.unlink(tmp)


NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def _check_name(kind: str, name: str) -> str:
    if not NAME.match(name):
        raise NbmillError(
            f"{kind} name {name!r}: use letters, digits, '-', '_' and '.' (up to 63), "
            f"starting with a letter or digit"
        )
    return name


@contextmanager
def prepare(
    ref: str,
    project_dir: Path,
    collect_dir: Path | None = None,
    endpoint: str | None = None,
    deployment: str = "local",
    key: str | None = None,
    follow: bool = False,
) -> Iterator[ServeConfig]:
    """Resolve and check the model, read its signature and the key: what every worker gets,
    valid inside the ``with`` block (a registered model's download is removed after it).
    Collected data goes to ``collect_dir/<endpoint>/<deployment>/...`` (the endpoint is the
    model's registered name unless given). ``key``: this key instead of the configured one.
    ``follow``: ``ref`` is NAME@ALIAS, and the workers switch when the ledger says it moved."""
    ledger = None
    if follow:
        from nbmill.models.ref import is_model_ref, parse_ref
        from nbmill.project.config import load_config

        if Path(ref).is_dir() or not is_model_ref(ref) or parse_ref(ref).alias is None:
            raise NbmillError(
                f"--follow {ref}: give a registered model's alias, NAME@ALIAS (such as "
                "diabetes-ridge@production); a folder or a NAME/VERSION never moves"
            )
        ledger = str(load_config(project_dir).ledger)
    with resolve_model(ref, project_dir) as (model_dir, digest, identity):
        if endpoint is None:
            named = identity.get("model", "")
            endpoint = named if NAME.match(named) else Path(model_dir).resolve().parent.name
            endpoint = endpoint if NAME.match(endpoint) else "local"
        mlmodel = read_mlmodel(model_dir)
        signature = Signature.from_mlmodel(mlmodel, model_dir)
        key, key_source = (key, "the caller") if key else load_key(project_dir)
        yield ServeConfig(
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
            follow=follow,
            project_dir=str(Path(project_dir).resolve()),
            ledger=ledger,
        )


def build_app(config: ServeConfig) -> ScoringApp:
    """The app for one worker: load the model (checked by the parent) and open the collector."""
    _log_to_stderr()
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
    if not config.follow:
        return ScoringApp(model, config.signature, config.key, collector, config.identity)
    from nbmill.serving.follow import follower_for

    follow, cleanup = follower_for(config)
    return ScoringApp(model, config.signature, config.key, collector, config.identity,
                      follow=follow, on_shutdown=cleanup)  # fmt: skip


def _log_to_stderr() -> None:
    """The service's own log (a failed scoring's detail, say) goes to stderr, beside uvicorn's;
    once per process, and only if nothing else set up where it goes."""
    logger = logging.getLogger("nbmill.serving")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def create_app() -> ScoringApp:
    """uvicorn's factory, in each worker: the config the parent put in the environment."""
    raw = json.loads(os.environ[ENV_CONFIG])
    return build_app(ServeConfig(**raw))


def _load(model_dir: Path, config: ServeConfig):
    return load_model(model_dir, config.sklearn, config.columns)


def load_model(model_dir: Path, sklearn: dict[str, Any] | None, columns: Sequence[str]):
    """The raw sklearn model when there is one (fast, numeric matrices), else the pyfunc.

    A model saved in skops' format is loaded as MLflow loads it (``skops.io.load`` with the
    trusted types its MLmodel names) without importing MLflow, which saves seconds of start-up;
    the files were checked against their recorded sha256 first. Other formats go through
    MLflow, with its own safeguards."""
    if sklearn is not None:
        flavor = sklearn
        if flavor.get("serialization_format") == "skops" and flavor.get("pickled_model"):
            import skops.io

            path = model_dir / flavor["pickled_model"]
            return skops.io.load(path, trusted=flavor.get("skops_trusted_types"))
        import mlflow.sklearn

        return mlflow.sklearn.load_model(str(model_dir))
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(str(model_dir))
    columns = list(columns)

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
    follow: bool = False,
) -> None:
    """Check the model, then run the service until SIGTERM or Ctrl-C. Afterwards the process
    is as it was: the model's download removed, the environment restored. ``follow``: switch
    versions as the alias moves (follow.py)."""
    import uvicorn

    with _sigterm_after_cleanup() as stopped:
        with (
            prepare(ref, project_dir, collect_dir, endpoint, deployment, follow=follow) as config,
            _worker_environment(config, workers),
        ):
            if stopped:  # a SIGTERM during the checks: nothing to serve
                return
            _announce(config, host, port, collect_dir, announce)
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


@contextmanager
def serving_here(ref: str, project_dir: Path, timeout: float = 60.0) -> Iterator[tuple[str, str]]:
    """The service ``nbmill serve`` runs (the same checks of the model's files, signature and
    key, the same app, real HTTP), in a thread of this process on a free 127.0.0.1 port, for
    the ``with`` block; yields its base URL and its key (a new one), nothing collected.

    The deploy step's smoke test uses it: the kernel has the model's libraries imported
    already, where a new interpreter would spend seconds importing them again."""
    import socket

    import uvicorn

    key = secrets.token_urlsafe(24)
    with prepare(ref, project_dir, key=key) as config, socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound here, handed over: no other process can take it
        app = build_app(config)
        server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        )
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="nbmill-serving", daemon=True
        )
        thread.start()
        try:
            _wait_started(server, thread, timeout)
            yield f"http://127.0.0.1:{sock.getsockname()[1]}", key
        finally:
            server.should_exit = True
            thread.join(timeout)


def _wait_started(server, thread: threading.Thread, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive():
            raise NbmillError("the service stopped while starting (its log says why)")
        if time.monotonic() > deadline:
            raise NbmillError(f"the service did not start in {timeout:g} s")
        time.sleep(0.005)


def _announce(
    config: ServeConfig,
    host: str,
    port: int,
    collect_dir: Path | None,
    announce: Callable[[str], None],
) -> None:
    model = config.identity.get("model")
    announce(f"serving {model} (sha256 {config.sha256[:12]}) on http://{host}:{port}")
    where = Path(collect_dir) / config.endpoint / config.deployment if collect_dir else "nowhere"
    announce(f"key: from {config.key_source}; collecting to {where}")
    if config.follow:
        alias = f"{model}@{config.identity.get('alias')}"
        announce(
            f"following {alias} (version {config.identity.get('version')} now) in {config.ledger}"
        )


@contextmanager
def _worker_environment(config: ServeConfig, workers: int) -> Iterator[None]:
    """The variables the workers read (the config; with several workers, a fresh folder for
    their shared metrics), set for the block, then restored, the folder removed."""
    values = {ENV_CONFIG: json.dumps(asdict(config))}
    if workers > 1 and not os.environ.get(MULTIPROC_ENV):  # /metrics sums every worker
        with tempfile.TemporaryDirectory(
            prefix="nbmill-metrics-", ignore_cleanup_errors=True
        ) as shared:
            with environ({**values, MULTIPROC_ENV: shared}):
                yield
        return
    with environ(values):
        yield


@contextmanager
def _sigterm_after_cleanup() -> Iterator[list[int]]:
    """Hold SIGTERM during the block, then end the process by it.

    uvicorn ends a one-worker service by raising the SIGTERM it caught again once it has shut
    down, so that the process exits by that signal, as a service manager expects; by default
    that kills the process on the spot and no ``finally`` runs. Held here until the block has
    cleaned up, the signal is raised again after it. The list yielded is non-empty once a
    SIGTERM came. Only the main thread can handle signals: elsewhere nothing is held."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: caught.append(signum))
    try:
        yield caught
    finally:
        signal.signal(signal.SIGTERM, previous)
    if caught:
        signal.raise_signal(signal.SIGTERM)
