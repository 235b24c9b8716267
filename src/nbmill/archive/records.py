"""Run records in the archive. Each file of a sealed run folder is an object named by its
sha256 (``objects/ab/abcd...``), so nothing is stored twice, within a record or across records
(the same data file in every run is one object), and an object never changes once written. The
record itself is its manifest, ``records/<id>.json``: every file and its sha256, and run.json's
text, so listing runs reads one small object per record. The manifest is written last: a
record is complete exactly when its manifest is there, so a push cut half way is never seen as
a record, and the next push completes it without sending a file twice."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbmill._hashing import hash_path, sha256_bytes
from nbmill.archive.base import Archive, ArchiveError
from nbmill.errors import NbmillError
from nbmill.records.runjson import RUN_JSON

RECORDS = "records"
OBJECTS = "objects"
THREADS = 8  # requests in flight at once: blob storage answers each in a few ms


def object_key(sha256: str) -> str:
    return f"{OBJECTS}/{sha256[:2]}/{sha256}"


def manifest_key(run_id: str) -> str:
    return f"{RECORDS}/{run_id}.json"


@dataclass
class Pushed:
    run_id: str
    sent: list[str] = field(default_factory=list)  # files sent now
    kept: list[str] = field(default_factory=list)  # already in the archive
    manifest: bool = True  # False: the archive already held this very record

    def as_dict(self) -> dict[str, Any]:
        return {"run": self.run_id, "sent": len(self.sent), "already_there": len(self.kept)}


def manifest(run_dir: Path) -> dict[str, Any]:
    """What the archive keeps of a sealed run folder: its id, every file's sha256, run.json."""
    run_dir = Path(run_dir)
    data = json.loads((run_dir / RUN_JSON).read_text(encoding="utf-8"))
    if data.get("status") == "running" or not data.get("files"):
        raise NbmillError(
            f"{run_dir}: run {run_dir.name} is not sealed yet; it is pushed when it ends"
        )
    return {
        "id": run_dir.name,
        "files": hash_path(run_dir, run_dir),
        "run_json": (run_dir / RUN_JSON).read_text(encoding="utf-8"),
    }


def encode(found: dict[str, Any]) -> bytes:
    return json.dumps(found, indent=1, sort_keys=True).encode()


def push(
    archive: Archive,
    run_dir: Path,
    after_each: Callable[[str], None] | None = None,
    known: set[str] | None = None,
) -> Pushed:
    """Push a sealed run folder: idempotent and resumable (an object already there is not sent
    again), the manifest last. ``after_each(rel)`` is called after each file is safe.
    ``known``: object keys known to be in the archive (``stored_objects``), so pushing many
    records asks once rather than once per file; the keys this push writes are added."""
    run_dir = Path(run_dir)
    found = manifest(run_dir)
    body = encode(found)
    done = Pushed(found["id"])
    if archive.read(manifest_key(done.run_id)) == body:
        done.kept, done.manifest = list(found["files"]), False
        return done
    by_object: dict[str, str] = {}
    for rel, sha in found["files"].items():
        by_object.setdefault(sha, rel)

    def one(sha: str, rel: str) -> tuple[str, bool]:
        key = object_key(sha)
        if known is not None and key in known:
            return rel, False
        sent = not archive.exists(key) and archive.put(key, (run_dir / rel).read_bytes())
        if known is not None:
            known.add(key)
        return rel, sent

    with ThreadPoolExecutor(THREADS) as pool:
        for rel, sent in pool.map(lambda item: one(*item), by_object.items()):
            (done.sent if sent else done.kept).append(rel)
            if after_each is not None:
                after_each(rel)
    archive.put(manifest_key(done.run_id), body, overwrite=True)  # a resumed run reseals
    return done


def stored_objects(archive: Archive) -> set[str]:
    """Every object's key: one listing (a page per 5,000 objects on Azure)."""
    return set(archive.keys(f"{OBJECTS}/"))


def complete(archive: Archive) -> dict[str, str]:
    """The complete records: run id -> its manifest's version token, sorted by id."""
    prefix = f"{RECORDS}/"
    return {
        key[len(prefix) : -len(".json")]: token
        for key, token in archive.keys(prefix).items()
        if key.endswith(".json") and "/" not in key[len(prefix) :]
    }


def read_manifest(archive: Archive, run_id: str) -> dict[str, Any]:
    raw = archive.read(manifest_key(run_id))
    if raw is None:
        raise ArchiveError(f"{archive.url}: no record of run {run_id}")
    try:
        found = json.loads(raw)
        if not isinstance(found.get("files"), dict) or not isinstance(found["run_json"], str):
            raise ValueError("no files or run_json")
    except (ValueError, KeyError, AttributeError) as exc:
        raise ArchiveError(
            f"{archive.url}/{manifest_key(run_id)}: not a manifest ({exc})"
        ) from None
    return found


def fetch(
    archive: Archive, found: dict[str, Any], into: Path, have: Callable[[str, str], bool]
) -> list[str]:
    """Write a record's files into ``into``, each checked against its sha256 as it arrives;
    ``have(rel, sha)`` says which are already there. Returns what is wrong (missing objects,
    altered objects), each named by the record's file; nothing wrong is written."""
    problems: list[str] = []

    def one(rel: str, sha: str) -> str | None:
        if have(rel, sha):
            return None
        data = archive.read(object_key(sha))
        if data is None:
            return f"run {found['id']}: {rel} is missing from the archive ({object_key(sha)})"
        if sha256_bytes(data) != sha:
            return f"run {found['id']}: {rel} was altered in the archive ({object_key(sha)})"
        target = Path(into) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return None

    with ThreadPoolExecutor(THREADS) as pool:
        for problem in pool.map(lambda item: one(*item), found["files"].items()):
            if problem:
                problems.append(problem)
    return problems
