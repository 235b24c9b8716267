"""Integrity: re-hash a run's archived files and check them, and run.json, against the ledger."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nbmill._hashing import compare_hashes, sha256_file
from nbmill.errors import NbmillError
from nbmill.governance.ledger import Ledger, verify_ledger
from nbmill.records import runjson
from nbmill.records.record import RunRecord
from nbmill.records.review import run_state
from nbmill.records.runjson import RUN_JSON, run_dirs

FINAL = ("nbmill.run.completed", "nbmill.run.failed")


class IntegrityError(NbmillError):
    """A record or the ledger differs from what was written."""


def final_events(events: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each run's last final event (completed or failed), by run id: one pass over the ledger."""
    found: dict[str, dict[str, Any]] = {}
    for event in events:
        if event["type"] in FINAL:
            run_id = (event.get("data") or {}).get("run_id")
            if run_id:
                found[run_id] = event
    return found


def verify_run(run_dir: Path, final: dict[str, dict[str, Any]], ledger_path: Path) -> int:
    """Raise IntegrityError naming the first changed, missing or added file; else count files.

    ``final`` is ``final_events`` of the ledger at ``ledger_path``."""
    record = RunRecord.load(run_dir)
    recorded: dict[str, str] = record.data.get("files") or {}
    if record.status == "running" or not recorded:
        raise IntegrityError(f"{run_dir}: run {record.id} has not finished; nothing to verify yet")
    problem = compare_hashes(Path(run_dir), recorded, record.hash_files(), RUN_JSON)
    if problem:
        raise IntegrityError(problem)
    event = final.get(record.id)
    if event is None:
        raise IntegrityError(
            f"{ledger_path}: no nbmill.run.completed/failed entry for run {record.id}"
        )
    if event["data"].get("run_json_sha256") != sha256_file(Path(run_dir) / RUN_JSON):
        raise IntegrityError(
            f"{run_dir / RUN_JSON}: differs from the ledger's entry (file changed)"
        )
    if event["data"].get("files") != recorded:
        raise IntegrityError(f"{run_dir / RUN_JSON}: file list differs from the ledger's entry")
    return len(recorded)


def verify(runs_dir: Path, ledger_path: Path, run_dir: Path | None = None) -> list[str]:
    """Verify the ledger chain, then one run or every run; returns lines saying what was checked."""
    entries = verify_ledger(ledger_path)
    lines = [f"ledger {ledger_path}: {entries} entries, chain intact"]
    final = final_events(Ledger(ledger_path).events())
    targets = [Path(run_dir)] if run_dir else sorted(run_dirs(runs_dir))
    for target in targets:
        data = runjson.read(target)
        state = run_state(data)
        if state == "running":
            lines.append(f"run {target.name}: still running; not verified yet")
            continue
        if state == "abandoned":
            runner = data.get("runner") or {}
            lines.append(
                f"run {target.name}: abandoned (its runner, pid {runner.get('pid')} on "
                f"{runner.get('host')}, is gone); it was never sealed, so there is nothing to "
                "verify"
            )
            continue
        count = verify_run(target, final, ledger_path)
        note = f" ({state})" if state != "completed" else ""
        lines.append(f"run {target.name}{note}: {count} files match")
    return lines
