"""The archive's ledger: one hash-chained list of events (the same lines as ``runs/ledger.jsonl``)
that every writer appends to, on every machine and in every build.

A writer reads the tail, chains its event to the last line, and appends on the condition that the
ledger is still as long as it read (``Archive.append``). Two writers therefore never chain to
the same line: the loser gets a Conflict, re-reads the tail, re-chains and tries again. An
event already in the tail (its append went through but the answer was lost) is not appended
twice.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any

from nbmill._hashing import canonical
from nbmill.archive.base import Archive, ArchiveError, Conflict
from nbmill.governance.ledger import LedgerError, next_entry, verify_entries

LEDGER = "ledger.jsonl"
ATTEMPTS = 500  # conflicts a writer sits out before it gives up


def parse(data: bytes, where: str) -> list[dict[str, Any]]:
    entries = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except ValueError:
            raise LedgerError(f"{where}: line {number} is not JSON") from None
    return entries


def append(archive: Archive, event: dict[str, Any], key: str = LEDGER) -> dict[str, Any]:
    """Chain ``event`` to the archive's ledger; returns its entry (the one already there when
    an earlier attempt of this very event went through)."""
    for attempt in range(ATTEMPTS):
        size, recent = last_entries(archive, key)
        for entry in recent:
            if entry.get("event", {}).get("id") == event["id"]:
                return entry
        entry = next_entry(recent[-1] if recent else None, event)
        try:
            archive.append(key, (canonical(entry) + "\n").encode(), size)
            return entry
        except Conflict:
            time.sleep(random.uniform(0, 0.002 * min(attempt + 1, 25)))
    raise ArchiveError(f"{archive.url}/{key}: still losing to other writers after {ATTEMPTS} tries")


def last_entries(archive: Archive, key: str = LEDGER) -> tuple[int, list[dict[str, Any]]]:
    """The ledger's length and its last few complete entries (at least one, unless empty)."""
    limit = 1 << 16
    while True:
        size, tail = archive.tail(key, limit)
        lines = tail.split(b"\n")
        cut = size > len(tail)  # the tail starts inside a line: drop that part
        if not cut or len([line for line in lines[1:] if line.strip()]) > 0:
            return size, parse(b"\n".join(lines[1:] if cut else lines), f"{archive.url}/{key}")
        limit *= 4


def entries(archive: Archive, key: str = LEDGER) -> list[dict[str, Any]]:
    return parse(archive.read(key) or b"", f"{archive.url}/{key}")


def verify(archive: Archive, key: str = LEDGER) -> list[dict[str, Any]]:
    """The archive's chain, walked; LedgerError naming the first bad entry."""
    found = entries(archive, key)
    verify_entries(found, f"{archive.url}/{key}")
    return found
