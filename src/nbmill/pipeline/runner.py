"""A pipeline run, from the command to the sealed record.

``run`` reads as the story of one run: load and check everything (nothing executes if any
parameter is wrong), open the record (or reopen it, to resume), execute the steps (scheduler.py),
then seal the record: report, hashes, the final event, MLflow. However a run ends (completed, a
failed step, SIGINT or SIGTERM) the record is sealed; only SIGKILL leaves it ``running``, and
``nbmill runs`` then shows it as abandoned.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbmill._hashing import compare_hashes, hash_path, sha256_file
from nbmill._time import iso, utcnow
from nbmill.errors import NbmillError, RunError, RunInterrupted
from nbmill.governance.events import Notifier
from nbmill.pipeline import cache, lifecycle
from nbmill.pipeline.forkserver import ForkServer, why_not_available
from nbmill.pipeline.interrupts import Interrupts
from nbmill.pipeline.kernels import notebook_imports
from nbmill.pipeline.progress import Progress, SilentProgress
from nbmill.pipeline.scheduler import Scheduler, cpu_count, key_parts
from nbmill.project.config import ProjectConfig, load_config
from nbmill.project.params import ParamsFile, load_params_file, resolve_params, step_settings
from nbmill.project.spec import Pipeline, Settings, find_project_dir, load_pipeline
from nbmill.records.archive import log_to_mlflow
from nbmill.records.provenance import who
from nbmill.records.record import RunRecord
from nbmill.records.report import write_run_page
from nbmill.records.review import find_run, run_state
from nbmill.records.runjson import DONE

ALL = "*"  # --force with no step names: every step


@dataclass(frozen=True)
class Plan:
    """Everything a run needs, loaded and checked before anything executes."""

    project: Path
    pipeline: Pipeline
    params_file: ParamsFile | None
    config: ProjectConfig
    resolved: dict[str, dict[str, Any]]
    settings: dict[str, Settings]


def plan(
    pipeline_path: str | Path,
    params_path: str | Path | None = None,
    overrides: Iterable[str] = (),
    runs_dir: str | Path | None = None,
    project_dir: str | Path | None = None,
) -> Plan:
    project = Path(project_dir).resolve() if project_dir else find_project_dir(Path(pipeline_path))
    pipeline = load_pipeline(pipeline_path, project)
    params_file = load_params_file(params_path) if params_path else None
    config = load_config(project, Path(runs_dir) if runs_dir else None)
    return Plan(
        project,
        pipeline,
        params_file,
        config.with_params_file(params_file),
        resolve_params(pipeline, params_file, overrides),
        step_settings(pipeline, params_file),
    )


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
) -> RunRecord:
    """Run a pipeline end to end; returns the completed record or raises RunError
    (RunInterrupted on SIGINT or SIGTERM).

    ``jobs``: steps at once (default: the CPUs). ``force``: steps to execute even when the cache
    has them (``*`` for all). ``resume``: a run to continue from its first step that did not
    complete. ``warm``: kernels forked from a template, or started one step ahead.
    ``reproduces``: the id of the run this one re-executes (recorded in run.json).
    """
    p = plan(pipeline_path, params_path, overrides, runs_dir, project_dir)
    jobs = jobs or cpu_count()
    forced = set(p.pipeline.steps) if ALL in set(force) else set(force)
    unknown = sorted(forced - set(p.pipeline.steps))
    if unknown:
        raise NbmillError(
            f"--force: unknown step '{unknown[0]}' (steps: {', '.join(p.pipeline.steps)})"
        )
    server = start_template(p, warm, forced)  # it imports while the record is opened
    try:
        record = reopen_record(p, resume) if resume else open_record(p, reason)
    except BaseException:
        if server is not None:
            server.close()
        raise
    notifier = notifier or Notifier(p.config)
    record.data["runner"] = runner_info(warm, jobs)
    if reproduces:
        record.data["reproduces"] = reproduces
    record.save()
    notifier.emit("nbmill.run.started", lifecycle.subject(record), lifecycle.run_started(record))
    clock = time.monotonic()
    with Interrupts() as interrupts:
        try:
            scheduler = Scheduler(
                p.pipeline,
                p.resolved,
                p.settings,
                record,
                p.project,
                progress or SilentProgress(),
                notifier,
                interrupts,
                jobs=jobs,
                warm=warm,
                force=forced,
                server=server,
            )
            scheduler.run()
        except BaseException as exc:  # a bug, or a second signal: never leave it "running"
            record.data["status"] = "failed"
            record.data["error"] = record.data["error"] or {
                "step": "(runner)",
                "type": type(exc).__name__,
                "message": str(exc) or "interrupted",
                "cell": None,
            }
            raise
        finally:
            seal(record, clock, interrupts.signum, p.config.ledger)
            kind = "completed" if record.status == "completed" else "failed"
            notifier.emit(
                f"nbmill.run.{kind}", lifecycle.subject(record), lifecycle.run_finished(record)
            )
            notifier.close()
    if interrupts.signum:
        raise RunInterrupted(
            f"run {record.id} interrupted by {interrupts.name}; the partial notebooks are "
            f"archived\n  record: {record.dir}",
            interrupts.signum,
            run_dir=record.dir,
        )
    if record.status != "completed":
        error = record.data["error"]
        raise RunError(
            f"run {record.id} failed at step '{error['step']}': {error['type']}: "
            f"{error['message']}\n  record: {record.dir}",
            run_dir=record.dir,
        )
    return record


def start_template(p: Plan, warm: bool, forced: set[str]) -> ForkServer | None:
    """The fork-server template, started now if kernels will be forked and some step will
    probably execute (one that is never cached, forced, or not cached yet)."""
    if not warm or why_not_available() is not None:
        return None
    index = cache.Cache(p.config.runs_dir, p.pipeline.name)
    if not any(
        not p.settings[name].cache or name in forced or not index.has_entries(name)
        for name in p.pipeline.order
    ):
        return None
    preload = [m for step in p.pipeline.steps.values() for m in notebook_imports(step.notebook)]
    return ForkServer(preload)


def runner_info(warm: bool, jobs: int) -> dict[str, Any]:
    why = why_not_available() if warm else "--no-warm"
    info = {"pid": os.getpid(), "host": socket.gethostname(), "jobs": jobs}
    info["kernels"] = "plain" if why else "fork"
    if why:
        info["kernels_why"] = why
    return info


def open_record(p: Plan, reason: str | None) -> RunRecord:
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
    completed step's outputs intact. Its other steps go back to pending."""
    from nbmill.records.provenance import environment

    data = find_run(p.config.runs_dir, ref)
    record = RunRecord.load(Path(p.config.runs_dir) / data["id"])
    at = f"--resume {record.id}"
    if record.status == "completed":
        raise NbmillError(f"{at}: the run completed; there is nothing to resume")
    if record.status == "running" and run_state(record.data) == "running":
        raise NbmillError(f"{at}: the run is still running (pid {record.data['runner']['pid']})")
    if record.data["pipeline"]["sha256"] != sha256_file(p.pipeline.path):
        raise NbmillError(f"{at}: {p.pipeline.path} changed since the run; start a new run")
    if record.data["params_file"] != _params_ref(p):
        raise NbmillError(f"{at}: the params file is not the one the run used; start a new run")
    fingerprint = environment(p.project)[0]["fingerprint"]
    if fingerprint != record.data["environment"]["fingerprint"]:
        raise NbmillError(f"{at}: the environment changed since the run; start a new run")
    for name in p.pipeline.order:
        entry = record.step(name)
        if entry["params"] != p.resolved[name]:
            raise NbmillError(f"{at}: step '{name}': its parameters differ from the run's")
        recorded = (entry.get("key_parts") or {}).get("code")
        if recorded and recorded != cache.code_digest(p.pipeline.steps[name].notebook):
            raise NbmillError(f"{at}: step '{name}': its notebook's code changed since the run")
        if entry["status"] in DONE:
            actual = {}
            for rel in entry.get("outputs") or {}:
                if (record.dir / rel).is_file():
                    actual.update(hash_path(record.dir / rel, record.dir))
            problem = compare_hashes(record.dir, entry.get("outputs") or {}, actual, "run.json")
            if problem:
                raise NbmillError(f"{at}: step '{name}' completed, but {problem}")
    for name in p.pipeline.order:
        entry = record.step(name)
        if entry["status"] not in DONE:
            notebook, params = entry["notebook"], entry["params"]
            entry.clear()
            entry.update(status="pending", notebook=notebook, params=params)
    record.data.update(status="running", error=None, ended_at=None, duration_s=None)
    record.data.pop("files", None)
    record.data["resumed"] = [
        *(record.data.get("resumed") or []),
        {"at": iso(utcnow()), "who": who()},
    ]
    return record


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


def seal(record: RunRecord, clock: float, signum: int | None, ledger: Path | None = None) -> None:
    """The end of every run, however it ended: status, times, report (with the run's lineage
    as far as the ledger knows it), hashes, MLflow."""
    for step in record.data["steps"].values():
        if step["status"] in ("pending", "running"):
            step["status"] = "skipped"
    if signum:
        record.data["status"] = "interrupted"
        if record.data["error"] is None:
            record.data["error"] = {
                "step": "(runner)",
                "type": "Interrupted",
                "message": "the run was interrupted before a step failed",
                "cell": None,
            }
    elif record.status == "running":
        failed = [s for s in record.data["steps"].values() if s["status"] not in (*DONE, "skipped")]
        record.data["status"] = "failed" if failed or record.data["error"] else "completed"
    record.data["ended_at"] = iso(utcnow())
    record.data["duration_s"] = round(time.monotonic() - clock, 3)
    write_run_page(record.dir, record.data, ledger=ledger, lineage=_lineage(record, ledger))
    record.data["files"] = record.hash_files()
    record.save()
    try:
        log_to_mlflow(record)
    except Exception as exc:  # the record stands without it; say so, never hide it
        print(
            f"warning: could not log the record to MLflow: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )


def explain(p: Plan, force: Iterable[str] = ()) -> list[dict[str, Any]]:
    """For each step: would it come from the cache, its key and parts, and why. Nothing runs.

    A step's inputs are known only when the steps that make them come from the cache (their
    outputs are then the cached ones); below a step that executes, the answer is a miss."""
    from nbmill.records.provenance import environment

    forced = set(p.pipeline.steps) if ALL in set(force) else set(force)
    index = cache.Cache(p.config.runs_dir, p.pipeline.name)
    fingerprint = environment(p.project)[0]["fingerprint"]
    outputs: dict[str, dict[str, str]] = {}
    lines = []
    for name in p.pipeline.order:
        step = p.pipeline.steps[name]
        line: dict[str, Any] = {"step": name, "hit": False, "key": None, "parts": None}
        missing = [need for need in step.needs if need not in outputs]
        if missing:
            line["reason"] = f"miss: step '{missing[0]}' before it executes, so its inputs change"
        else:
            inputs = {}
            for need in step.needs:
                inputs.update(outputs[need])
            wanted = {
                rel: digest
                for rel, digest in inputs.items()
                if any(
                    rel == r or rel.startswith(r.rstrip("/") + "/") for r in step.inputs.values()
                )
            }
            parts = key_parts(step, p.resolved[name], wanted, fingerprint, p.project)
            line.update(key=cache.key_of(parts), parts=parts)
            if not p.settings[name].cache:
                line["reason"] = "miss: cache: false for this step"
            elif name in forced:
                line["reason"] = "miss: --force"
            else:
                hit, why = index.lookup(name, parts, p.config.runs_dir)
                line["hit"] = hit is not None
                line["reason"] = f"hit: {why}" if hit else f"miss: {why}"
                if hit:
                    outputs[name] = dict(hit.entry.get("outputs") or {})
        lines.append(line)
    return lines


def _rel(path: Path, project: Path) -> str:
    try:
        return path.relative_to(project).as_posix()
    except ValueError:
        return str(path)
