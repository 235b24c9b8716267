"""``nbmill run``: run a pipeline of notebooks and archive the run."""

from __future__ import annotations

import argparse


def add_commands(sub) -> None:
    run = sub.add_parser(
        "run",
        help="run a pipeline of notebooks and archive the run",
        description="Run each step's notebook in a fresh kernel, in dependency order, and keep "
        "the executed notebooks, HTML, parameters, metrics and hashes under runs/<run-id>/.",
    )
    run.add_argument("pipeline", help="pipeline file, e.g. pipelines/training.yml")
    run.add_argument("--params", metavar="FILE", help="parameter set, e.g. params/dev.yml")
    run.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a parameter: key=value for every step, step.key=value for one",
    )
    run.add_argument("--reason", metavar="TEXT", help="why this run (default: the commit subject)")
    run.add_argument("--runs-dir", metavar="DIR", help="where run folders go (default: runs/)")
    run.add_argument(
        "--no-warm",
        action="store_true",
        help="start each step's kernel only when the step begins (as plain papermill does)",
    )
    run.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from nbmill.pipeline.progress import ConsoleProgress
    from nbmill.pipeline.runner import run

    record = run(
        args.pipeline,
        params_path=args.params,
        overrides=args.param,
        reason=args.reason,
        runs_dir=args.runs_dir,
        progress=ConsoleProgress(),
        warm=not args.no_warm,
    )
    print(f"run {record.id} completed in {record.data['duration_s']:.1f}s")
    for name, value in record.data.get("metrics", {}).items():
        print(f"  {name} = {value:.4g}")
    print(f"record: {record.dir}")
    print(f"report: {record.dir / 'index.html'}")
    return 0
