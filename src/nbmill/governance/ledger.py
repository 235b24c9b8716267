"""An append-only, hash-chained ledger of lifecycle events (JSON lines).

Each line is ``{"seq", "prev", "hash", "event"}``: ``prev`` is the previous line's ``hash`` and
``hash`` is the sha256 of the canonical JSON of ``{"seq", "prev", "event"}``. Editing, deleting
or reordering any line breaks the chain, and ``verify_ledger`` names the first broken line.
Appends from concurrent processes take a file lock, so lines never interleave.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from nbmill._hashing import canonical, sha256_text
from nbmill.errors import NbmillError

GENESIS = "0" * 64
LOCK_TIMEOUT_S = 60


class LedgerError(NbmillError):
    """The ledger is unreadable or its chain is broken."""


def entry_hash(seq: int, prev: str, event: dict[str, Any]) -> str:
    return sha256_text(canonical({"seq": seq, "prev": prev, "event": event}))


@dataclass(frozen=True)
class Ledger:
    path: Path

    @property
    def lock(self) -> FileLock:
        return FileLock(str(self.path) + ".lock", timeout=LOCK_TIMEOUT_S)

    def append(self, event: dict[str, Any]) -> dict[str, Any]:
        """Append one event under the lock; returns the entry written."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock:
            entry = next_entry(self._last_entry(), event)
            line = (canonical(entry) + "\n").encode()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        return entry

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every entry, in file order; raises LedgerError on a line that is not JSON."""
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    raise LedgerError(f"{self.path}:{number}: not a JSON line") from None

    def events(self) -> list[dict[str, Any]]:
        return [entry["event"] for entry in self.entries()]

    def _last_entry(self) -> dict[str, Any] | None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return None
        with open(self.path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            block = 1 << 16
            data = b""
            while size > 0 and data.count(b"\n") < 2:
                step = min(block, size)
                size -= step
                handle.seek(size)
                data = handle.read(step) + data
        lines = [line for line in data.splitlines() if line.strip()]
        try:
            return json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            raise LedgerError(
                f"{self.path}: the last line is not a ledger entry; run `nbmill verify` "
                "to find where the ledger was damaged"
            ) from None


def next_entry(last: dict[str, Any] | None, event: dict[str, Any]) -> dict[str, Any]:
    """The entry that chains ``event`` after ``last`` (the first one when None)."""
    seq = last["seq"] + 1 if last else 1
    prev = last["hash"] if last else GENESIS
    return {"seq": seq, "prev": prev, "hash": entry_hash(seq, prev, event), "event": event}


def verify_ledger(path: Path) -> int:
    """Walk the chain; returns how many entries it holds, or raises naming the first bad one."""
    return verify_entries(Ledger(Path(path)).entries(), str(path))


def verify_entries(entries: Iterable[dict[str, Any]], name: str) -> int:
    """Walk a chain of entries (``name`` says where they are from, in errors); returns how
    many there are, or raises LedgerError naming the first bad one."""
    prev, count = GENESIS, 0
    for number, entry in enumerate(entries, start=1):
        where = f"{name}: entry {number}"
        if not isinstance(entry, dict) or not {"seq", "prev", "hash", "event"} <= set(entry):
            raise LedgerError(f"{where}: missing seq/prev/hash/event")
        if entry["seq"] != number:
            raise LedgerError(
                f"{where}: sequence number is {entry['seq']}, expected {number} "
                "(an entry was deleted, inserted or moved)"
            )
        if entry["prev"] != prev:
            raise LedgerError(
                f"{where} (seq {entry['seq']}): does not follow the entry before it "
                "(an entry was deleted, inserted or moved)"
            )
        if entry_hash(entry["seq"], entry["prev"], entry["event"]) != entry["hash"]:
            raise LedgerError(
                f"{where} (seq {entry['seq']}): content does not match its hash "
                "(the entry was edited)"
            )
        prev, count = entry["hash"], number
    return count
