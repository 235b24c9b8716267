"""What a run announces: the data of its ``nbmill.run.*`` and ``nbmill.step.*`` events."""

from __future__ import annotations

from typing import Any

from nbmill._hashing import sha256_file
from nbmill.records.record import RunRecord
from nbmill.records.runjson import RUN_JSON


def subject(record: RunRecord, step: str | None = None) -> str:
    return f"runs/{record.id}" + (f"/steps/{step}" if step else "")


def run_started(record: RunRecord) -> dict[str, Any]:
    data = record.data
    return {
        "run_id": record.id,
        "run_dir": str(record.dir),
        "pipeline": data["pipeline"]["name"],
        "who": data["who"],
        "why": data["why"],
        "commit": data["git"]["commit"],
        "params": {name: step["params"] for name, step in data["steps"].items()},
    }


def step_finished(record: RunRecord, step: str) -> dict[str, Any]:
    entry = record.data["steps"][step]
    return {
        "run_id": record.id,
        "pipeline": record.data["pipeline"]["name"],
        "step": step,
        "status": entry["status"],
        "who": record.data["who"],
        "why": record.data["why"],
        "duration_s": entry.get("duration_s"),
        "inputs": entry.get("inputs") or {},
        "outputs": entry.get("outputs") or {},
        "error": {"step": step, **entry["error"]} if entry.get("error") else None,
    }


def run_finished(record: RunRecord) -> dict[str, Any]:
    """The final event: it holds the sha256 of run.json and of every file, for ``verify``."""
    data = record.data
    return {
        "run_id": record.id,
        "run_dir": str(record.dir),
        "status": data["status"],
        "pipeline": data["pipeline"]["name"],
        "who": data["who"],
        "why": data["why"],
        "commit": data["git"]["commit"],
        "metrics": data["metrics"],
        "error": data["error"],
        "files": data.get("files") or {},
        "run_json_sha256": sha256_file(record.dir / RUN_JSON),
    }
