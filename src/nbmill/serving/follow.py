"""Following an alias: ``nbmill serve NAME@ALIAS --follow`` answers with whichever version the
alias points at, as the ledger records it, and switches when the alias moves, with no failed
request.

The ledger is the source of truth: every alias move (``nbmill promote``, ``rollback``, the
gate) appends ``nbmill.model.promoted`` to it. Each request first looks at the ledger's size
(one ``stat``); when it grew, the new entries are read. When they move the alias, requests wait
while the new version is loaded in a thread: downloaded from the registry, its files checked
against the sha256 recorded at registration, its signature read, and smoke-scored on the last
rows served. Only then does it take traffic. The requests the old version had started finish
on it (each version has its own batcher). A version that fails to load is not served: the old
one goes on answering and ``/health`` says why. Recent versions stay loaded, so a rollback
switches at once. Each switch is recorded as ``nbmill.model.deployed`` before it takes effect,
and does not happen if it cannot be recorded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nbmill.serving.batching import Batcher
from nbmill.serving.request import Signature

PROMOTED = "nbmill.model.promoted"
KEEP_LOADED = 3  # versions kept in memory: the one answering and the last ones before it
log = logging.getLogger(__name__)


@dataclass
class Served:
    """One loaded model version, ready to answer."""

    model: Any  # has predict(matrix)
    signature: Signature
    version: str | None
    sha256: str
    identity: dict[str, Any]  # what /health says of it
    batcher: Batcher = field(init=False)
    header: bytes = field(init=False)  # the version, as every response carries it

    def __post_init__(self) -> None:
        self.batcher = Batcher(self.model.predict)
        self.header = (self.version or "none").encode()


@dataclass(frozen=True)
class Move:
    """An alias move, as the ledger recorded it."""

    version: str
    why: str | None
    seq: int


class AliasWatch:
    """Reads the ledger from where it last stopped and tells where ``name@alias`` points."""

    def __init__(self, ledger: Path, name: str, alias: str):
        self.ledger = Path(ledger)
        self.name, self.alias = name, alias
        self._offset = 0  # bytes read, up to the end of the last whole line
        self._seen: tuple[int, int] | None = None  # (size, inode) when last read
        self.last: Move | None = None  # the newest move of the alias seen

    def changed(self) -> bool:
        """Whether the ledger changed since it was last read (one ``stat``)."""
        try:
            stat = os.stat(self.ledger)
        except FileNotFoundError:
            return False
        return (stat.st_size, stat.st_ino) != self._seen

    def read(self) -> Move | None:
        """The newest move of the alias among the entries not read before, if any."""
        try:
            with open(self.ledger, "rb") as handle:
                stat = os.fstat(handle.fileno())
                seen = (stat.st_size, stat.st_ino)
                if self._seen is not None and (
                    stat.st_ino != self._seen[1] or stat.st_size < self._offset
                ):  # another file now: read anew
                    self._offset = 0
                handle.seek(self._offset)
                data = handle.read(stat.st_size - self._offset)
        except FileNotFoundError:
            return None
        self._seen = seen
        whole = data.rfind(b"\n") + 1  # a line still being written is read once it grew
        self._offset += whole
        found = None
        for line in data[:whole].splitlines():
            move = self._move(line)
            if move is not None:
                found = move
        if found is not None:
            self.last = found
        return found

    def _move(self, line: bytes) -> Move | None:
        """The line's move of this alias, or None (another event, or not an entry at all:
        ``nbmill verify`` names those; serving goes on)."""
        try:
            entry = json.loads(line)
            event = entry["event"]
            info = event.get("data") or {}
            if (
                event.get("type") == PROMOTED
                and info.get("model") == self.name
                and info.get("alias") == self.alias
                and info.get("version") is not None
            ):
                return Move(str(info["version"]), info.get("why"), int(entry.get("seq", 0)))
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
        return None


Loader = Callable[[str, "np.ndarray | None"], Served]  # (version, rows to smoke-score) -> Served
Switched = Callable[[Served, Served, Move], None]  # (old, new, the move) -> None


class Follower:
    """Which version answers, switching as the alias moves (see the module's text).

    ``now()`` is the hot path: the version answering, or None while a switch is under way;
    then ``await follower.switching`` gives the new one (or the old, if the new one failed)."""

    def __init__(
        self,
        served: Served,
        watch: AliasWatch,
        load: Loader,
        announce: Switched,
        switched: Switched,
    ):
        """``load`` and ``announce`` (the record of a switch, written before it happens) run in
        a thread; ``switched`` on the event loop, once the new version answers."""
        self.served = served
        self.watch = watch
        self.load = load
        self.announce = announce
        self.switched = switched
        self.loaded: dict[str | None, Served] = {served.version: served}
        self.target: Move | None = None  # where the ledger says the alias points
        self.error: str | None = None  # why the version the alias points at is not answering
        self.switching: asyncio.Task | None = None
        self.sample: np.ndarray | None = None  # the last rows scored: the smoke test's input

    def now(self) -> Served | None:
        if self.watch.changed():
            self._read()
        return self.served if self.switching is None else None

    async def next(self) -> Served:
        """The version that answers once the switch under way is done (the one answering
        now if it failed). A request cancelled while it waits does not cancel the switch."""
        task = self.switching
        if task is None:
            return self.served
        try:
            return await asyncio.shield(task)
        except Exception:  # logged by the switch; the version answering goes on
            return self.served

    def state(self) -> dict[str, Any]:
        """For /health: what is followed, where the ledger says it points, and any error."""
        target = self.target.version if self.target else self.served.version
        return {
            "following": f"{self.watch.name}@{self.watch.alias}",
            "alias_version": target,
            "switching": self.switching is not None,
            "follow_error": self.error,
        }

    def _read(self) -> None:
        move = self.watch.read()
        if move is None or (self.target is not None and move == self.target):
            return
        self.target = move
        if move.version == self.served.version:
            self.error = None  # back where it is: whatever failed is moot
        elif self.switching is None:
            self.switching = asyncio.ensure_future(self._switch())

    async def _switch(self) -> Served:
        loop = asyncio.get_running_loop()
        try:
            while self.target is not None and self.target.version != self.served.version:
                move, old = self.target, self.served
                try:
                    new = await loop.run_in_executor(None, self._prepare, move, old)
                except Exception as exc:  # not served: the old version goes on answering
                    self.error = f"version {move.version} not served: {exc}"
                    log.error("%s@%s: %s", self.watch.name, self.watch.alias, self.error)
                    if self.watch.changed():
                        self._read()
                    if self.target == move:
                        break
                    continue
                self.served, self.error = new, None
                self._keep(new)
                self.switched(old, new, move)
                if self.watch.changed():  # a move while this one loaded
                    self._read()
        finally:
            self.switching = None
        return self.served

    def _prepare(self, move: Move, old: Served) -> Served:
        """In a thread: the version loaded (or kept from before), and its switch recorded.
        A version with other input columns is not switched to: the collection, and the
        clients, are made for the columns served (deploy it as another deployment)."""
        new = self.loaded.get(move.version) or self.load(move.version, self.sample)
        if new.signature.columns != old.signature.columns:
            raise ValueError(
                f"its input columns ({', '.join(new.signature.columns)}) are not the ones "
                f"served ({', '.join(old.signature.columns)}); serve it as another deployment"
            )
        self.announce(old, new, move)
        return new

    def _keep(self, served: Served) -> None:
        self.loaded.pop(served.version, None)
        self.loaded[served.version] = served  # the newest last
        while len(self.loaded) > KEEP_LOADED:
            del self.loaded[next(iter(self.loaded))]


def smoke_score(served: Served, sample: np.ndarray | None) -> int:
    """Score ``sample`` (else a row of zeros) with a version about to take traffic: one
    prediction a row, each a finite number when they are numbers. Returns the rows scored."""
    width = len(served.signature.columns)
    rows = sample if sample is not None and sample.ndim == 2 and sample.shape[1] == width else None
    if rows is None:
        rows = np.zeros((1, width))
    predictions = np.asarray(served.model.predict(rows))
    if len(predictions) != len(rows):
        raise ValueError(f"the smoke test gave {len(predictions)} predictions for {len(rows)} rows")
    if predictions.dtype.kind in "fc" and not np.isfinite(predictions).all():
        raise ValueError("the smoke test gave predictions that are not finite numbers")
    return len(rows)


def follower_for(config) -> tuple[Callable[[Served, Switched], Follower], Callable[[], None]]:
    """For one worker of ``nbmill serve NAME@ALIAS --follow`` (``config``: its ServeConfig):
    how the app makes its Follower, and what removes the versions downloaded, at shutdown."""
    import shutil
    import tempfile
    import threading

    from nbmill.models.ref import parse_ref

    ref = parse_ref(config.identity["model"] + "@" + config.identity["alias"])
    project_dir = Path(config.project_dir)
    scratch = Path(tempfile.mkdtemp(prefix="nbmill-follow-"))
    # MLflow takes a second or two to import: done now, in the background, not at a switch.
    threading.Thread(target=_import_registry, name="nbmill-follow-import", daemon=True).start()

    def load(version: str, sample: np.ndarray | None) -> Served:
        return load_version(project_dir, ref.name, ref.alias, version, scratch, sample)

    def record(old: Served, new: Served, move: Move) -> None:
        announce(project_dir, config, old, new, move)

    def make(served: Served, switched: Switched) -> Follower:
        watch = AliasWatch(Path(config.ledger), ref.name, ref.alias)
        return Follower(served, watch, load, record, switched)

    return make, lambda: shutil.rmtree(scratch, ignore_errors=True)


def _import_registry() -> None:
    import nbmill.models.registry  # noqa: F401


def load_version(
    project_dir: Path, name: str, alias: str, version: str, scratch: Path, sample
) -> Served:
    """Version ``version`` of ``name``, ready to take traffic: downloaded, its files checked
    against the sha256 recorded at registration, loaded, and smoke-scored on ``sample``."""
    from nbmill.errors import NbmillError
    from nbmill.models import store as st
    from nbmill.models.registry import download_version
    from nbmill.serving.request import read_mlmodel
    from nbmill.serving.startup import load_model

    store = st.Store.of(project_dir)
    found = st.version(store, name, version)
    tags = found.tags or {}
    expected = tags.get(st.TAG_ARTIFACTS)
    if not expected:
        raise NbmillError(
            f"model '{name}' version {version} has no recorded sha256 "
            f"({st.TAG_ARTIFACTS}): register it with nbmill so that its files can be checked"
        )
    folder = download_version(store, found, scratch / f"v{version}")  # checked against it
    mlmodel = read_mlmodel(folder)
    signature = Signature.from_mlmodel(mlmodel, folder)
    sklearn = (mlmodel.get("flavors") or {}).get("sklearn")
    model = load_model(folder, sklearn, signature.columns)
    identity = {"model": name, "version": str(version), "alias": alias,
                "run_id": tags.get(st.TAG_RUN_ID), "sha256": expected}  # fmt: skip
    served = Served(model, signature, str(version), expected, identity)
    served.identity["smoke_rows"] = smoke_score(served, sample)
    return served


def announce(project_dir: Path, config, old: Served, new: Served, move: Move) -> None:
    """The switch about to happen, as ``nbmill.model.deployed`` in the ledger (and to the
    sinks); written before the new version takes traffic."""
    from nbmill.context import notifier
    from nbmill.records.provenance import who

    name, version = new.identity["model"], new.version
    data = {
        "target": f"serve:{config.endpoint}/{config.deployment}",
        "model": name,
        "version": version,
        "alias": new.identity.get("alias"),
        "run_id": new.identity.get("run_id"),
        "who": who(),
        "why": f"{name}@{new.identity.get('alias')} moved to version {version}: {move.why}",
        "model_sha256": new.sha256,
        "previous_version": old.version,
        "smoke_test": {"rows": new.identity.get("smoke_rows", 0)},
        "instance": f"{os.uname().nodename}-{os.getpid()}",
        "ledger_seq": move.seq,
    }
    with notifier(project_dir) as emit:  # no record, no switch: an error here stops it
        emit.emit("nbmill.model.deployed", f"models/{name}/{version}", data)
