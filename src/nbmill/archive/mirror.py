"""The archive read as a runs folder: a local mirror (``.nbmill/archive/<url digest>/``) that
``runs``, ``show``, ``verify``, ``lineage``, ``report``, ``events`` and ``models history`` read
exactly as they read ``runs/``, so their output is the same.

Records never change once complete, so the mirror fetches only what is new: one listing of the
manifests, then each new or changed manifest (run.json is in it: ``nbmill runs`` needs nothing
more), and a record's other files only when a command needs them, each checked against its
sha256 as it arrives. The ledger is append-only: the mirror fetches the bytes after those it
has."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nbmill._hashing import sha256_file, sha256_text
from nbmill.archive import ledger, records
from nbmill.archive.base import Archive
from nbmill.records.runjson import RUN_JSON

MIRRORS = Path(".nbmill") / "archive"
STATE = ".mirror.json"  # manifest tokens, and which records are whole


class Mirror:
    def __init__(self, archive: Archive, folder: Path):
        self.archive = archive
        self.folder = Path(folder)
        self.runs_dir = self.folder / "runs"
        self.ledger = self.runs_dir / ledger.LEDGER
        self._state_path = self.folder / STATE

    @classmethod
    def of(cls, archive: Archive, project_dir: Path) -> Mirror:
        return cls(archive, Path(project_dir) / MIRRORS / sha256_text(archive.url)[:16])

    def _state(self) -> dict:
        if self._state_path.is_file():
            return json.loads(self._state_path.read_text(encoding="utf-8"))
        return {"url": self.archive.url, "manifests": {}, "whole": {}, "ledger": 0}

    def _save(self, state: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = self._state_path.with_suffix(".partial")
        partial.write_text(json.dumps(state, sort_keys=True), encoding="utf-8")
        partial.replace(self._state_path)

    def index(self) -> list[str]:
        """Every complete record's run.json in the mirror; returns the records' ids. A record
        that changed in the archive (a resumed run sealed again) is fetched afresh."""
        state = self._state()
        listed = records.complete(self.archive)
        changed = [i for i, token in listed.items() if state["manifests"].get(i) != token]

        def fetch(run_id: str) -> tuple[str, dict]:
            return run_id, records.read_manifest(self.archive, run_id)

        with ThreadPoolExecutor(records.THREADS) as pool:
            for run_id, found in pool.map(fetch, changed):
                folder = self.runs_dir / run_id
                if folder.exists():
                    shutil.rmtree(folder)
                folder.mkdir(parents=True)
                (folder / RUN_JSON).write_text(found["run_json"], encoding="utf-8")
                state["manifests"][run_id] = listed[run_id]
                state["whole"].pop(run_id, None)
        for gone in set(state["manifests"]) - set(listed):  # not in the archive (any more)
            shutil.rmtree(self.runs_dir / gone, ignore_errors=True)
            state["manifests"].pop(gone)
            state["whole"].pop(gone, None)
        self._save(state)
        return sorted(listed)

    def pull(self, run_ids: list[str] | None = None) -> list[str]:
        """Every file of these records (default: all) in the mirror, each checked against its
        sha256 as it arrives; returns what is wrong (a missing or altered object, named)."""
        ids = self.index() if run_ids is None else run_ids
        state = self._state()
        problems = []
        for run_id in ids:
            if state["whole"].get(run_id) == state["manifests"].get(run_id):
                continue
            found = records.read_manifest(self.archive, run_id)
            folder = self.runs_dir / run_id

            def have(rel: str, sha: str, folder: Path = folder) -> bool:
                return (folder / rel).is_file() and sha256_file(folder / rel) == sha

            wrong = records.fetch(self.archive, found, folder, have)
            problems += wrong
            if not wrong:
                state["whole"][run_id] = state["manifests"].get(run_id)
        self._save(state)
        return problems

    def pull_ledger(self) -> Path:
        """The archive's ledger, copied: only the bytes after those already here."""
        state = self._state()
        have = self.ledger.stat().st_size if self.ledger.is_file() else 0
        if have != state["ledger"]:  # the copy here is not what was fetched: fetch it all
            have = 0
        size = self.archive.size(ledger.LEDGER)
        if size < have:  # shorter than what was read before: fetch it all, verify names it
            have = 0
        new = self.archive.read(ledger.LEDGER, have) if size > have else b""
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        with open(self.ledger, "r+b" if have else "wb") as handle:
            handle.seek(have)
            handle.write(new or b"")
            handle.truncate()
        state["ledger"] = have + len(new or b"")
        self._save(state)
        return self.ledger
