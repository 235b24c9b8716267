"""A run executed elsewhere (each step an Azure ML job), made a record as a local run's is.

Each step's output folder holds its slice of the run folder (its outputs at the same relative
paths, its executed notebook and page, its metrics and products) and the events it wrote, in a
ledger of its own (``STEP_LEDGER``). Assembling merges the slices into ``runs/<id>/``, appends
the steps' events to the project's ledger in the order the steps ran, records each step (its
inputs' and outputs' sha256, metrics, products, page), then ends the run as the runner ends a
local one: final status, run page, every file's sha256, MLflow, the final event. ``show``,
``verify`` and ``lineage`` then read it as any other run.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Mapping
from pathlib import Path

STEP_LEDGER = ".nbmill/ledger.jsonl"  # inside a step's output: the events it wrote
COMPLETED = "Completed"  # Azure ML's final status of a job that succeeded


def run_why(plan, reason: str | None) -> str:
    """Why a run elsewhere is made: ``reason``, else the commit's subject (as run.json says)."""
    from nbmill.records.provenance import provenance

    return provenance(plan.project, reason)["why"]


def assemble(
    plan,
    run_id: str,
    why: str | None,
    outputs: Mapping[str, Path],
    statuses: Mapping[str, str],
    *,
    ended: str = COMPLETED,
    job: str | None = None,
):
    """The record ``runs/<run_id>/`` of the planned run (``nbmill.pipeline.plan``) whose step
    jobs ended as ``statuses`` (step -> Azure ML's final status) and wrote ``outputs`` (step ->
    its output folder); ``ended``: the pipeline job's final status, ``job``: its name. A step
    that did not complete, or whose notebook is not in its output, failed; what it wrote is kept
    (a partial notebook shows where it stopped); the record is sealed however the run went.
    Returns the record (``RunRecord``)."""
    from nbmill.governance.events import Notifier
    from nbmill.pipeline import lifecycle
    from nbmill.pipeline.runner import finish, open_record
    from nbmill.pipeline.steps import StepFailure, hash_io
    from nbmill.records.runjson import read_metrics, read_products

    record = open_record(plan, why, run_id)
    clock = time.monotonic()
    # The process that assembles the record; the steps ran in plain kernels, one job each.
    runner = {"pid": os.getpid(), "host": socket.gethostname(), "kernels": "plain"}
    record.start({**runner, "jobs": len(outputs) or 1, "on": "azureml", "job": job})
    notifier = Notifier(plan.config)
    try:
        notifier.emit(
            "nbmill.run.started", lifecycle.subject(record), lifecycle.run_started(record)
        )
        pages = {}
        for name in plan.pipeline.order:
            folder = outputs.get(name)
            if folder is None or record.status != "running":
                continue
            _merge_step(record, name, Path(folder), notifier.ledger)
            step = plan.pipeline.steps[name]
            executed = record.notebook_path(name)
            try:
                if statuses.get(name) != COMPLETED:
                    raise StepFailure(
                        "StepJobFailed",
                        f"step '{name}': its Azure ML job ended {statuses.get(name, 'unknown')}",
                    )
                if not executed.is_file():
                    raise StepFailure("MissingOutput", f"step '{name}' left no executed notebook")
                hashes = {
                    "inputs": hash_io(step.inputs, record.dir, name, "input"),
                    "outputs": hash_io(step.outputs, record.dir, name, "output"),
                }
            except StepFailure as failure:
                record.finish_step(name, "failed", error=failure.as_dict())
                continue
            record.finish_step(
                name,
                "completed",
                **hashes,
                executed=executed.relative_to(record.dir).as_posix(),
                metrics=read_metrics(record.dir, name),
                products=read_products(record.dir, name),
            )
            if record.html_path(name).is_file():
                pages[name] = record.html_path(name).relative_to(record.dir).as_posix()
        if pages:
            record.pages_rendered(pages, {})
        missing = [n for n in plan.pipeline.order if record.step(n).status == "pending"]
        if record.status == "running" and (ended != COMPLETED or missing):
            named = f" {job}" if job else ""
            left = f"; no output from {', '.join(missing)}" if missing else ""
            record.fail("JobFailed", f"the Azure ML job{named} ended {ended}{left}")
        finish(record, clock, None, plan, notifier)
    finally:
        notifier.close()
    return record


def _merge_step(record, name: str, folder: Path, ledger) -> None:
    """One step's output into the run folder at the same relative paths, and the events it
    wrote into the project's ledger (chained anew there, in the order they were written)."""
    from nbmill.governance.ledger import Ledger

    for entry in Ledger(folder / STEP_LEDGER).entries():
        ledger.append(entry["event"])
    shutil.copytree(
        folder, record.dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".nbmill")
    )
