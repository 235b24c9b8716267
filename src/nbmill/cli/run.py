"""``nbmill run``: run a pipeline of notebooks and archive the run."""

from __future__ import annotations

import argparse
import json

from nbmill.cli._shared import JSON, RUNS_DIR, Command, arg, command
from nbmill.errors import NbmillError

COMMANDS: list[Command] = []


@command(
    COMMANDS,
    "run",
    "run a pipeline of notebooks and archive the run",
    "Run each step's notebook in a fresh kernel, in dependency order, and keep the executed "
    "notebooks, HTML, parameters, metrics and hashes under runs/<run-id>/.",
    arg("pipeline", help="pipeline file, e.g. pipelines/training.yml"),
    arg("--params", metavar="FILE", help="parameter set, e.g. params/dev.yml"),
    arg(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a parameter: key=value for every step, step.key=value for one",
    ),
    arg("--reason", metavar="TEXT", help="why this run (default: the commit subject)"),
    arg("--runs-dir", metavar="DIR", help="where run folders go (default: runs/)"),
    arg(
        "--no-warm",
        action="store_true",
        help="start each step's kernel only when the step begins (as plain papermill does)",
    ),
    arg("-j", "--jobs", type=int, metavar="N", help="steps at once (default: the CPUs)"),
    arg(
        "--force",
        nargs="*",
        metavar="STEP",
        help="execute these steps (all, with no names) even if the cache has them",
    ),
    arg("--resume", metavar="RUN", help="continue RUN from its first step that did not complete"),
    arg(
        "--backend",
        choices=["local", "azureml"],
        default="local",
        help="where the steps run: here (local) or as an Azure ML pipeline job (azureml)",
    ),
    arg("--dry-run", metavar="DIR", help="azureml: write the job YAML to DIR and check it only"),
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

    local = args.backend == "local" and not args.explain
    with started_early(local and not args.no_warm):  # the template imports while we do
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from nbmill.pipeline.progress import ConsoleProgress
    from nbmill.pipeline.runner import ALL, explain, plan, run

    force = [] if args.force is None else (args.force or [ALL])
    if args.explain:
        steps = plan(args.pipeline, args.params, args.param, args.runs_dir)
        for line in explain(steps, force=force):
            print(f"{line['step']}: {line['reason']}")
            if line["key"]:
                print(f"  key {line['key'][:16]}")
                for part, value in line["parts"].items():
                    shown = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
                    print(f"  {part:<11} {shown[:120]}")
        return 0
    if args.backend == "azureml":
        return _run_on_azure(args)
    if args.dry_run:
        raise NbmillError("--dry-run is for --backend azureml")
    if args.jobs is not None and args.jobs < 1:
        raise NbmillError(f"--jobs {args.jobs}: give 1 or more")
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
    )
    print(f"run {record.id} completed in {record.data['duration_s']:.1f}s")
    for name, value in record.data.get("metrics", {}).items():
        print(f"  {name} = {value:.4g}")
    print(f"record: {record.dir}")
    print(f"report: {record.dir / 'index.html'}")
    drifted = [
        name.rsplit(".", 1)[0]
        for name, value in record.data.get("metrics", {}).items()
        if name.endswith(".drift_detected") and value > 0
    ]
    if args.fail_on_drift and drifted:
        print(f"drift detected by step {', '.join(drifted)} (--fail-on-drift): exit 3")
        return 3
    return 0


def _run_on_azure(args: argparse.Namespace) -> int:
    """The pipeline as an Azure ML pipeline job: written and checked (--dry-run), or submitted,
    streamed and its outputs downloaded into runs/<id>/."""
    from pathlib import Path

    from nbmill._time import new_run_id
    from nbmill.azure import jobs
    from nbmill.azure.settings import Workspace, settings_from
    from nbmill.pipeline.runner import plan

    planned = plan(args.pipeline, args.params, args.param, args.runs_dir)
    where = args.params or "params"
    settings = settings_from(planned.params_file.sections if planned.params_file else {}, where)
    run_id = new_run_id()
    job = jobs.pipeline_job(planned, settings, run_id, planned.project)
    if args.dry_run:
        path = jobs.write(job, Path(args.dry_run) / "job.yml")
        problems = jobs.validate(path)
        for problem in problems:
            print(f"error: {path}: {problem}")
        if not problems:
            print(f"pipeline job: {path} (load_job and its validation: valid)")
        return 1 if problems else 0
    run_dir = planned.config.runs_dir / run_id
    run_dir.mkdir(parents=True)
    status = jobs.submit(job, Workspace.from_environment(), run_dir)
    print(f"run {run_id}: Azure ML job {status}; outputs in {run_dir}")
    return 0


@command(
    COMMANDS,
    "reproduce",
    "re-execute a recorded run and compare every metric and output",
    "Re-run RUN's pipeline with its recorded parameters in a sandbox (runs/reproductions/: its "
    "own ledger, deployments and MLflow store), then compare every metric and every step "
    "output's sha256 with the original. A commit or environment fingerprint that differs from "
    "the record is a warning (--strict: refused); --at-commit runs from a clean worktree of the "
    "recorded commit. Exit 1 when a metric differs.",
    arg("run", help="the run to reproduce: an id, a unique prefix, or latest"),
    arg("--strict", action="store_true", help="refuse when the commit or environment differs"),
    arg("--at-commit", action="store_true", help="run from a clean worktree of the run's commit"),
    RUNS_DIR,
    JSON,
)
def cmd_reproduce(args: argparse.Namespace) -> int:
    import contextlib
    import sys
    from pathlib import Path

    from nbmill.cli._shared import config, project, table
    from nbmill.governance.events import Notifier
    from nbmill.pipeline import reproduce
    from nbmill.pipeline.progress import ConsoleProgress
    from nbmill.pipeline.runner import ALL, run
    from nbmill.records.review import find_run

    settings = config(args)
    here = project()
    original = find_run(settings.runs_dir, args.run)
    problems = reproduce.mismatches(original, here)
    if problems and args.strict and not args.at_commit:
        raise NbmillError(
            f"run {original['id']}: " + "; ".join(problems) + " (--at-commit runs the recorded one)"
        )
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    commit = (original.get("git") or {}).get("commit")
    if args.at_commit and not commit:
        raise NbmillError(f"run {original['id']}: no commit recorded; cannot --at-commit")
    tree = reproduce.checkout(here, commit) if args.at_commit else contextlib.nullcontext(here)
    params_file = (original.get("params_file") or {}).get("file")
    with tree as source:
        with reproduce.sandbox(
            settings.runs_dir, source if args.at_commit else None, settings.code_paths
        ) as folder:
            record = run(
                Path(source) / original["pipeline"]["file"],
                params_path=Path(source) / params_file if params_file else None,
                overrides=reproduce.overrides(original),
                reason=f"reproduce {original['id']}",
                runs_dir=folder,
                project_dir=source,
                progress=ConsoleProgress(),
                force=[ALL],
                reproduces=original["id"],
            )
    rows = reproduce.compare(original, record.data)
    differs = [r for r in rows if r["kind"] == "metric" and r["verdict"] != "equal"]
    notifier = Notifier(settings)
    try:
        notifier.emit(
            "nbmill.run.reproduced",
            f"runs/{original['id']}",
            {
                "run_id": original["id"],
                "reproduction": record.id,
                "reproduction_dir": str(record.dir),
                "metrics_equal": not differs,
                "outputs_differ": [
                    r["name"] for r in rows if r["kind"] == "output" and r["verdict"] != "equal"
                ],
            },
        )
    finally:
        notifier.close()
    if args.json:
        data = {"original": original["id"], "reproduction": record.id, "rows": rows}
        print(json.dumps(data, indent=2))
    else:
        print(f"reproduction {record.id} of {original['id']}: {record.dir}")
        print(table(rows, "nothing to compare"))
        print("every metric equal" if not differs else f"{len(differs)} metric(s) differ")
    return 1 if differs else 0
