"""``nbmill run`` (here, or ``--on azureml``) and ``nbmill reproduce``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from nbmill.cli._shared import (
    ARCHIVE,
    ON_AZUREML,
    RUNS_DIR,
    Commands,
    arg,
    config,
    note,
    on,
    output,
    print_dry_run,
    print_json,
    repeated,
    table,
    use_archive,
)
from nbmill.errors import DIFFERENT, DRIFT, OK, NbmillError, RunError

COMMANDS = Commands()
LOCAL = "local"


@COMMANDS.command(
    "run",
    "run a pipeline of notebooks and archive the run",
    "Run each step's notebook in a fresh kernel, in dependency order, and keep the executed "
    "notebooks, HTML, parameters, metrics and hashes under runs/<run-id>/. Prints the run's "
    "id, status, record and metrics (--json: as JSON, also for a failed run).",
    arg("pipeline", help="pipeline file, e.g. pipelines/training.yml"),
    arg("--params", metavar="FILE", help="parameter set, e.g. params/dev.yml"),
    repeated(
        "-p",
        "--param",
        metavar="KEY=VALUE",
        help="a parameter: key=value (every step), step.key=value (one)",
    ),
    arg("--reason", metavar="TEXT", help="why this run (default: the commit subject)"),
    arg("--runs-dir", metavar="DIR", help="where run folders go (default: runs/)"),
    ARCHIVE,
    arg(
        "--no-warm",
        action="store_true",
        help="start each step's kernel only when the step begins (as plain papermill does)",
    ),
    arg("-j", "--jobs", type=int, metavar="N", help="steps at once (default: the CPUs)"),
    repeated("--force", metavar="STEP", help="execute STEP even if cached (repeatable)"),
    arg("--force-all", action="store_true", help="execute every step; take none from the cache"),
    arg("--resume", metavar="RUN", help="continue RUN from its first step that did not complete"),
    repeated(
        "--only",
        metavar="STEP",
        help="run only STEP and the steps it needs (from the cache where it has them); the "
        "others are skipped (repeatable)",
    ),
    *on(LOCAL, ON_AZUREML, default=LOCAL, old="--backend"),
    arg(
        "--fail-on-drift",
        action="store_true",
        help="exit 3 when a monitoring step detected drift (a metric drift_detected above 0)",
    ),
    arg(
        "--explain",
        action="store_true",
        help="print each step's cache key, its parts, and hit or miss with the reason; run nothing",
    ),
)
def cmd_run(args: argparse.Namespace) -> int:
    from nbmill.pipeline.forkserver import started_early

    local = args.on == LOCAL and not args.explain
    with started_early(local and not args.no_warm):  # the template imports while we do
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from nbmill.pipeline.progress import ConsoleProgress
    from nbmill.pipeline.runner import ALL, explain, plan, run

    use_archive(args)
    force = [*args.force, *([ALL] if args.force_all else [])]
    if args.explain:
        lines = explain(plan(args.pipeline, args.params, args.param, args.runs_dir), force=force)
        return output(args, lines, lambda: _explained(lines))
    if args.on == ON_AZUREML:
        return _run_on_azure(args)
    if args.dry_run:
        raise NbmillError(
            "--dry-run writes the Azure ML job: add --on azureml (--explain shows what a local "
            "run would execute)"
        )
    if args.jobs is not None and args.jobs < 1:
        raise NbmillError(f"--jobs {args.jobs}: give 1 or more")
    try:
        record = run(
            args.pipeline,
            params_path=args.params,
            overrides=args.param,
            reason=args.reason,
            runs_dir=args.runs_dir,
            progress=ConsoleProgress(),
            warm=not args.no_warm,
            jobs=args.jobs,
            force=force,
            resume=args.resume,
            only=args.only,
        )
    except RunError as exc:  # the error goes to stderr; a script still gets the record
        if args.json and exc.run_dir is not None:
            from nbmill.records.runjson import read

            print_json(summary(read(Path(exc.run_dir)), Path(exc.run_dir)))
        raise
    result = summary(record.data, record.dir)
    code = DRIFT if args.fail_on_drift and result["drift"] else OK
    return output(args, result, lambda: _ran(result, code), code)


def summary(run: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """What ``nbmill run`` prints: the run's id, status, record, report and metrics, and the
    steps that detected drift (a metric ``drift_detected`` above 0)."""
    metrics = run.get("metrics") or {}
    return {
        "id": run["id"],
        "status": run["status"],
        "duration_s": run.get("duration_s"),
        "record": str(run_dir),
        "report": str(Path(run_dir) / "index.html"),
        "metrics": metrics,
        "drift": [
            name.rsplit(".", 1)[0]
            for name, value in metrics.items()
            if name.endswith(".drift_detected") and value > 0
        ],
    }


def _ran(result: dict[str, Any], code: int) -> str:
    lines = [f"run {result['id']} {result['status']} in {result['duration_s']:.1f}s"]
    lines += [f"  {name} = {value:.4g}" for name, value in result["metrics"].items()]
    lines += [f"record: {result['record']}", f"report: {result['report']}"]
    if code == DRIFT:
        steps = ", ".join(result["drift"])
        lines.append(f"drift detected by step {steps} (--fail-on-drift): exit {DRIFT}")
    return "\n".join(lines)


def _explained(lines: list[dict[str, Any]]) -> str:
    text = []
    for line in lines:
        text.append(f"{line['step']}: {line['reason']}")
        if line["key"]:
            text.append(f"  key {line['key'][:16]}")
            for part, value in line["parts"].items():
                shown = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
                text.append(f"  {part:<11} {shown[:120]}")
    return "\n".join(text)


def _run_on_azure(args: argparse.Namespace) -> int:
    """The pipeline as an Azure ML pipeline job: written and checked (--dry-run), or submitted,
    streamed and its outputs downloaded into runs/<id>/."""
    from nbmill.azure import jobs

    where = (args.pipeline, args.params, args.param, args.runs_dir)
    if args.dry_run:
        return print_dry_run(args, jobs.dry_run(*where, out=args.out, reason=args.reason))
    ran = jobs.run_pipeline(*where, log=note, reason=args.reason)
    result = ran.as_dict()
    return output(
        args, result, lambda: f"run {ran.id}: Azure ML job {ran.status}; outputs in {ran.run_dir}"
    )


@COMMANDS.command(
    "reproduce",
    "re-execute a recorded run and compare every metric and output",
    "Re-run RUN's pipeline with its recorded parameters in a sandbox (runs/reproductions/: its "
    "own ledger, deployments and MLflow store), then compare every metric and every step "
    "output's sha256 with the original. A commit or environment fingerprint that differs from "
    "the record is a warning (--strict: refused); --at-commit runs from a clean worktree of the "
    f"recorded commit. Exit {DIFFERENT} when a metric differs.",
    arg("run", help="the run to reproduce: an id, a unique prefix, or latest"),
    arg("--strict", action="store_true", help="refuse when the commit or environment differs"),
    arg("--at-commit", action="store_true", help="run from a clean worktree of the run's commit"),
    RUNS_DIR,
)
def cmd_reproduce(args: argparse.Namespace) -> int:
    from nbmill.pipeline.progress import ConsoleProgress
    from nbmill.pipeline.reproduce import reproduce_run

    done = reproduce_run(
        args.run,
        config(args),
        strict=args.strict,
        at_commit=args.at_commit,
        progress=ConsoleProgress(),
        warn=lambda problem: note(f"warning: {problem}"),
    )
    differ = done.metrics_differ

    def text() -> str:
        verdict = f"{len(differ)} metric(s) differ" if differ else "every metric equal"
        head = f"reproduction {done.reproduction} of {done.original}: {done.run_dir}"
        return f"{head}\n{table(done.rows, 'nothing to compare')}\n{verdict}"

    return output(args, done.as_dict(), text, DIFFERENT if differ else OK)
