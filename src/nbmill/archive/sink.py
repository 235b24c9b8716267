"""Every event into the archive's ledger as well as the local one. A background sink: while the
archive cannot be reached (offline, the account down) the events stay spooled, and the next
delivery appends them first, oldest first, so the shared chain keeps each machine's order. A
run's final event, once appended, is anchored (``anchors.keep``)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from filelock import FileLock

from nbmill.archive import anchors, ledger
from nbmill.archive.base import Archive, ArchiveError, open_archive
from nbmill.governance.sinks.base import DeliveryError, Sink

FINAL = ("nbmill.run.completed", "nbmill.run.failed")


class ArchiveSink(Sink):
    _archive: Archive | None = None
    _down: str | None = None  # why the archive could not be reached: later events wait too

    def archive(self) -> Archive:
        if self._archive is None:
            self._archive = open_archive(str(self.config.url))
        return self._archive

    def send(self, event: dict[str, Any]) -> None:
        if self._down is not None:  # no request per event while the account is away
            raise DeliveryError(f"waiting behind an earlier event: {self._down}")
        spool = Path(self.config.spool) / self.name if self.config.spool else None
        try:
            if spool is None:
                return self._append(event)
            spool.mkdir(parents=True, exist_ok=True)
            with FileLock(str(spool) + ".lock", timeout=120):
                for path in sorted(spool.glob("*.json")):  # earlier events, still waiting
                    earlier = _read(path) if path.stem < event["id"] else None
                    if earlier is not None:
                        self._append(earlier)
                        path.unlink(missing_ok=True)
                self._append(event)
        except ArchiveError as exc:
            self._down = str(exc)
            raise DeliveryError(str(exc)) from None

    def _append(self, event: dict[str, Any]) -> None:
        try:
            appended(self.archive(), event, self.stdout)
        except ArchiveError:
            raise
        except Exception as exc:  # noqa: BLE001 - retried: the append is not repeated
            raise DeliveryError(
                f"appended, but its anchor was not kept: {type(exc).__name__}: {exc}"
            ) from None


def appended(archive: Archive, event: dict[str, Any], stdout: TextIO) -> dict[str, Any]:
    """Append one event to the archive's ledger; a run's final event is then anchored."""
    entry = ledger.append(archive, event)
    if event["type"] in FINAL:
        anchors.keep(entry, (event.get("data") or {}).get("run_dir"), stdout)
    return entry


def backfill(archive: Archive, events: Iterable[dict[str, Any]], stdout: TextIO) -> int:
    """Append, in their order, the events (a local ledger's) that the archive's ledger lacks:
    a project's history from before it had an archive, or a run's events from a step that
    could not reach it. Returns how many were appended."""
    there = {entry.get("event", {}).get("id") for entry in ledger.entries(archive)}
    added = 0
    for event in events:
        if event.get("id") not in there:
            appended(archive, event, stdout)
            added += 1
    return added


def _read(path: Path) -> dict[str, Any] | None:
    """A spooled event; None for a file that is not one (``nbmill events retry`` names it)."""
    from nbmill.errors import NbmillError
    from nbmill.governance.events import Spool

    try:
        return Spool.read(path)
    except NbmillError:
        return None
