"""A pipeline run, from the command to the sealed record.

``run`` reads as the story of one run: plan (load and check everything: nothing executes if
any parameter is wrong), open the record (or reopen it, to resume), execute the steps
(scheduler.py), then seal the record: report, hashes, the final event, MLflow. However a run
ends (completed, a failed step, SIGINT or SIGTERM, a bug in the runner, a record that cannot be
sealed) it gets a final status and a final event, and what it started (the fork-server template,
the notifier's delivery thread) is stopped; only SIGKILL leaves it ``running``, and
``nbmill runs`` then shows it as abandoned.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from nbmill._hashing import compare_hashes, hash_path, sha256_file
from nbmill._time import iso, utcnow
from nbmill.errors import NbmillError, RunError, RunInterrupted
from nbmill.governance.events import Notifier
from nbmill.pipeline import cache, lifecycle
from nbmill.pipeline.forkserver import ForkServer, take_early, why_not_available
from nbmill.pipeline.interrupts import Interrupts
from nbmill.pipeline.kernels import preload_list
from nbmill.pipeline.plan import ALL, Plan, explain, plan
from nbmill.pipeline.progress import Progress, SilentProgress
from nbmill.pipeline.scheduler import Scheduler, cpu_count
from nbmill.records import runjson
from nbmill.records.archive import log_to_mlflow
from nbmill.records.provenance import who
from nbmill.records.record import RunRecord
from nbmill.records.report import write_run_page
from nbmill.records.review import find_run, run_state
from nbmill.records.runjson import DONE

__all__ = ["ALL", "Plan", "explain", "plan", "run"]


def run(
    pipeline_path: str | Path,
    params_path: str | Path | None = None,
    overrides: Iterable[str] = (),
    reason: str | None = None,
    runs_dir: str | Path | None = None,
    project_dir: str | Path | None = None,
    progress: Progress | None = None,
    warm: bool = True,
    notifier: Notifier | None = None,
    jobs: int | None = None,
    force: Iterable[str] = (),
    resume: str | None = None,
    reproduces: str | None = None,
    only: Iterable[str] = (),
) -> RunRecord:
    """Run a pipeline end to end; returns the completed record or raises RunError
    (RunInterrupted on SIGINT or SIGTERM).

    ``jobs``: steps at once (default: the CPUs). ``force``: steps to execute even when the cache
    has them (``*`` for all). ``resume``: a run to continue from its first step that did not
    complete. ``warm``: kernels forked from a template, or started one step ahead.
    ``notifier``: where events go (default: one for the project, closed at the end; one given
    is the caller's to close). ``reproduces``: the id of the run this one re-executes.
    ``only``: run these steps and what they need (from the cache where it has them), and leave
    the others out (skipped).
    """
    p = plan(pipeline_path, params_path, overrides, runs_dir, project_dir)
    forced = p.forced(force)
    left_out = p.left_out(only)
    jobs = jobs or cpu_count()
    with ExitStack() as owned:
        server = start_template(p, warm, forced)  # it imports while the record is opened
        if server is not None:
            owned.callback(server.close)
        if notifier is None:
            notifier = Notifier(p.config)
            owned.callback(notifier.close)
        record = reopen_record(p, resume) if resume else open_record(p, reason)
        with Interrupts() as interrupts:
            clock = time.monotonic()
            try:
                record.start(runner_info(warm, jobs, list(only)), reproduces)
                record.leave_out(left_out)
                notifier.emit(
                    "nbmill.run.started", lifecycle.subject(record), lifecycle.run_started(record)
                )
                scheduler = Scheduler(
                    p, record, progress or SilentProgress(), notifier, interrupts,
                    jobs=jobs, warm=warm, force=forced, server=server,
                )  # fmt: skip
                scheduler.run()
            except BaseException as exc:  # a bug, or a second signal: never leave it "running"
                _fail(record, exc)
                finish(record, clock, interrupts.signum, p, notifier)
                raise
            problem = finish(record, clock, interrupts.signum, p, notifier)
    if interrupts.signum:
        raise RunInterrupted(
            f"run {record.id} interrupted by {interrupts.name}; the partial notebooks are "
            f"archived\n  record: {record.dir}",
            interrupts.signum,
            run_dir=record.dir,
        )
    if record.status != "completed":
        error = record.doc.error
        raise RunError(
            f"run {record.id} failed at step '{error.step}': {error.type}: "
            f"{error.message}\n  record: {record.dir}",
            run_dir=record.dir,
        )
    if problem is not None:
        raise RunError(f"run {record.id}: {problem}\n  record: {record.dir}", run_dir=record.dir)
    return record


def _fail(record: RunRecord, exc: BaseException) -> None:
    try:
        record.fail(type(exc).__name__, str(exc) or "interrupted")
    except Exception as problem:  # noqa: BLE001 - the run's own error is the one to raise
        _warn("the failure could not be recorded", problem)


def finish(
    record: RunRecord, clock: float, signum: int | None, p: Plan, notifier: Notifier
) -> str | None:
    """End the run however it went: final status and times, the run page (with the run's
    lineage as far as the ledger knows it), every file's sha256, MLflow, the final event.
    Each part is tried even if one before it failed: a page that cannot be written fails the
    run (its record is incomplete) but the record is still sealed and announced. Returns what
    went wrong sealing it (None: nothing), and never raises, so it masks no error."""
    problem = None
    try:
        record.end(signum, time.monotonic() - clock)
        try:
            ledger = p.config.ledger
            lineage = _lineage(record, ledger)
            write_run_page(record.dir, record.data, ledger=ledger, lineage=lineage)
        except Exception as exc:  # noqa: BLE001 - recorded on the run, which then failed
            problem = f"the run page could not be written: {type(exc).__name__}: {exc}"
            record.fail("RecordError", problem)
        record.seal()
        _push(record, p)
    except Exception as exc:  # noqa: BLE001 - the final event still goes out
        problem = problem or f"the record could not be sealed: {type(exc).__name__}: {exc}"
        _warn("the record could not be sealed", exc)
    try:
        log_to_mlflow(record)
    except Exception as exc:  # the record stands without it; say so, never hide it
        _warn("could not log the record to MLflow", exc)
    kind = "completed" if record.status == "completed" else "failed"
    try:
        notifier.emit(
            f"nbmill.run.{kind}", lifecycle.subject(record), lifecycle.run_finished(record)
        )
    except Exception as exc:  # noqa: BLE001 - said, and returned
        problem = problem or f"the final event could not be written: {type(exc).__name__}: {exc}"
        _warn("the final event could not be written", exc)
    return problem


def _push(record: RunRecord, p: Plan) -> None:
    """The sealed record into the archive, if one is configured; a failure is said, and the
    record stays complete here (``nbmill archive push`` completes the push later)."""
    if not p.config.archive:
        return
    try:
        from nbmill.archive import open_archive
        from nbmill.archive.records import push

        push(open_archive(p.config.archive, p.project), record.dir)
    except Exception as exc:  # noqa: BLE001 - the run's record stands without it
        _warn(f"the record was not pushed to {p.config.archive} (`nbmill archive push` "
              "completes it)", exc)  # fmt: skip


def _warn(what: str, exc: BaseException) -> None:
    print(f"warning: {what}: {type(exc).__name__}: {exc}", file=sys.stderr)


def start_template(p: Plan, warm: bool, forced: set[str]) -> ForkServer | None:
    """The fork-server template (one started early, if any, else a new one), preloading what
    the notebooks import, if kernels will be forked and some step will probably execute (one
    that is never cached, forced, or not cached yet)."""
    early = take_early()
    index = cache.Cache(p.config.runs_dir, p.pipeline.name)
    if (
        not warm
        or why_not_available() is not None
        or all(
            p.settings[name].cache and name not in forced and index.has_entries(name)
            for name in p.pipeline.order
        )
    ):
        if early is not None:
            early.close()
        return None
    server = early or ForkServer()
    server.preload([m for step in p.pipeline.steps.values() for m in preload_list(step.notebook)])
    return server


def runner_info(warm: bool, jobs: int, only: list[str] | None = None) -> dict[str, Any]:
    why = why_not_available() if warm else "--no-warm"
    info = {"pid": os.getpid(), "host": socket.gethostname(), "jobs": jobs}
    if only:
        info["only"] = only
    info["kernels"] = "plain" if why else "fork"
    if why:
        info["kernels_why"] = why
    return info


def open_record(p: Plan, reason: str | None, run_id: str | None = None) -> RunRecord:
    """A new record of the planned run, every step pending (``run_id``: one already given,
    as to an Azure ML job; else a new one)."""
    from nbmill.records.provenance import provenance

    steps = {
        name: {
            "status": "pending",
            "notebook": _rel(p.pipeline.steps[name].notebook, p.project),
            "params": p.resolved[name],
        }
        for name in p.pipeline.order
    }
    return RunRecord.create(
        Path(p.config.runs_dir),
        {
            **({"id": run_id} if run_id else {}),
            "pipeline": {
                "name": p.pipeline.name,
                "file": _rel(p.pipeline.path.resolve(), p.project),
                "sha256": sha256_file(p.pipeline.path),
            },
            "params_file": _params_ref(p),
            "started_at": iso(utcnow()),
            "ended_at": None,
            "duration_s": None,
            **provenance(p.project, reason),
            "steps": steps,
            "metrics": {},
            "error": None,
        },
        project_dir=p.project,
    )


def _params_ref(p: Plan) -> dict[str, str] | None:
    if not (p.params_file and p.params_file.path):
        return None
    return {
        "file": _rel(p.params_file.path.resolve(), p.project),
        "sha256": sha256_file(p.params_file.path),
    }


def reopen_record(p: Plan, ref: str) -> RunRecord:
    """The run to resume, checked: same pipeline, params, code and environment, and every
    completed step's files intact. Its other steps go back to pending, and the files they left
    (partial outputs, notebooks, pages) are removed: only what the completed steps wrote
    stays."""
    from nbmill.records.provenance import environment

    data = find_run(p.config.runs_dir, ref)
    record = RunRecord.load(Path(p.config.runs_dir) / data["id"])
    at = f"--resume {record.id}"
    if record.status == "completed":
        raise NbmillError(f"{at}: the run completed; there is nothing to resume")
    if record.status == "running" and run_state(record.data) == "running":
        raise NbmillError(f"{at}: the run is still running (pid {record.doc.runner.pid})")
    if record.doc.pipeline.sha256 != sha256_file(p.pipeline.path):
        raise NbmillError(f"{at}: {p.pipeline.path} changed since the run; start a new run")
    params_file = record.doc.params_file
    if (params_file.model_dump() if params_file else None) != _params_ref(p):
        raise NbmillError(f"{at}: the params file is not the one the run used; start a new run")
    fingerprint = environment(p.project)[0]["fingerprint"]
    if fingerprint != record.doc.environment.fingerprint:
        raise NbmillError(f"{at}: the environment changed since the run; start a new run")
    for name in p.pipeline.order:
        entry = record.step(name)
        if entry.params != p.resolved[name]:
            raise NbmillError(f"{at}: step '{name}': its parameters differ from the run's")
        recorded = (entry.key_parts or {}).get("code")
        if recorded and recorded != cache.code_digest(p.pipeline.steps[name].notebook):
            raise NbmillError(f"{at}: step '{name}': its notebook's code changed since the run")
        if entry.status in DONE:
            wrote = {**(entry.outputs or {}), **(entry.undeclared or {})}
            actual = {}
            for rel in wrote:
                if (record.dir / rel).is_file():
                    actual.update(hash_path(record.dir / rel, record.dir))
            problem = compare_hashes(record.dir, wrote, actual, "run.json")
            if problem:
                raise NbmillError(f"{at}: step '{name}' completed, but {problem}")
    _keep_only_done(record)
    record.reopen(who())
    return record


def _keep_only_done(record: RunRecord) -> None:
    """Remove from the run folder every file that no completed (or cached) step wrote."""
    keep = {runjson.RUN_JSON, runjson.ENVIRONMENT_TXT, runjson.MLFLOW_JSON}
    for name, entry in record.doc.steps.items():
        if entry.status in DONE:
            keep |= {*(entry.outputs or {}), *(entry.undeclared or {})}
            keep |= {
                path.relative_to(record.dir).as_posix()
                for path in (
                    record.notebook_path(name),
                    record.html_path(name),
                    record.metrics_path(name),
                )
            }
    for path in sorted(record.dir.rglob("*"), reverse=True):  # files before their folders
        rel = path.relative_to(record.dir).as_posix()
        if any(part.startswith(".") for part in rel.split("/")):
            continue
        if path.is_dir() and not path.is_symlink():
            if not any(path.iterdir()) and rel != runjson.NOTEBOOKS:
                path.rmdir()
        elif rel not in keep:
            path.unlink()


def _lineage(record: RunRecord, ledger: Path | None) -> dict[str, Any] | None:
    """The run's lineage for its page: hashes as now written (the record's own list of them
    is made after the page); a problem reading it leaves the section out, never the run."""
    from nbmill.governance.ledger import Ledger
    from nbmill.records.lineage import run_chain

    try:
        events = Ledger(ledger).events() if ledger is not None and Path(ledger).is_file() else []
        links = run_chain(record.dir, events, check=False, run=record.data)
    except Exception as exc:  # noqa: BLE001 - the page says why instead
        print(f"warning: lineage not shown: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None
    return {"target": record.id, "links": [link.as_dict() for link in links]}


def _rel(path: Path, project: Path) -> str:
    try:
        return path.relative_to(project).as_posix()
    except ValueError:
        return str(path)
