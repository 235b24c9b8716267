"""``nbmill run``: run a pipeline of notebooks and archive the run."""

from __future__ import annotations

import argparse

from nbmill.cli._shared import Command, arg, command

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
)
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
