"""Integrity: re-hash a run's archived files and check them, and run.json, against the ledger."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nbmill.errors import NbmillError
from nbmill.ledger import Ledger, verify_ledger
from nbmill.record import RUN_JSON, RunRecord, hash_tree, sha256_file

FINAL = ("nbmill.run.completed", "nbmill.run.failed")


class IntegrityError(NbmillError):
    """A record or the ledger differs from what was written."""


def final_event(ledger: Ledger, run_id: str) -> dict[str, Any] | None:
    found = None
    for event in ledger.events():
        if event["type"] in FINAL and event.get("data", {}).get("run_id") == run_id:
            found = event
    return found


def verify_run(run_dir: Path, ledger: Ledger) -> int:
    """Raise IntegrityError naming the first changed, missing or added file; else count files."""
    record = RunRecord.load(run_dir)
    recorded: dict[str, str] = record.data.get("files") or {}
    if record.status == "running" or not recorded:
        raise IntegrityError(f"{run_dir}: run {record.id} has not finished; nothing to verify yet")
    actual = hash_tree(Path(run_dir))
    for rel, digest in sorted(recorded.items()):
        if rel not in actual:
            raise IntegrityError(f"{run_dir / rel}: missing (recorded in {RUN_JSON})")
        if actual[rel] != digest:
            raise IntegrityError(f"{run_dir / rel}: sha256 differs from {RUN_JSON} (file changed)")
    extra = sorted(set(actual) - set(recorded))
    if extra:
        raise IntegrityError(f"{run_dir / extra[0]}: not part of the record (file added)")
    event = final_event(ledger, record.id)
    if event is None:
        raise IntegrityError(
            f"{ledger.path}: no nbmill.run.completed/failed entry for run {record.id}"
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
    ledger = Ledger(ledger_path)
    entries = verify_ledger(ledger_path)
    lines = [f"ledger {ledger_path}: {entries} entries, chain intact"]
    targets = (
        [run_dir]
        if run_dir
        else sorted(
            p for p in Path(runs_dir).iterdir() if (p / RUN_JSON).exists() and p.name != "scratch"
        )
        if Path(runs_dir).exists()
        else []
    )
    for target in targets:
        count = verify_run(target, ledger)
        lines.append(f"run {target.name}: {count} files match")
    return lines
