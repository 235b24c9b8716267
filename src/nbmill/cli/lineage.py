"""``nbmill lineage TARGET``: from a model, a deployment, a run or a collected request back to
its data, code and notebooks, each link checked as it is printed."""

from __future__ import annotations

import argparse
from pathlib import Path

from nbmill.cli._shared import ARCHIVE, RUNS_DIR, Commands, arg, output, reading
from nbmill.errors import DIFFERENT, OK

COMMANDS = Commands()


@COMMANDS.command(
    "lineage",
    "trace a model, deployment, run or request back to its data, code and notebooks",
    "TARGET is NAME@ALIAS, NAME/VERSION, a local deployment (local), a run id, or a collected "
    "request's correlation id. Prints the chain: the model version, the run that trained it "
    "(who, why, when), each step's executed notebook and the data it read with their sha256, "
    "the commit, the environment, the gate decision and the deployments that served it. "
    "Every hash is checked as it is printed: BROKEN marks one that no longer matches (exit "
    f"{DIFFERENT}).",
    arg("target", help="NAME@ALIAS, NAME/VERSION, local, a run id, or a correlation id"),
    arg("--collect-dir", metavar="DIR", help="where collected requests are (nbmill.yml's)"),
    RUNS_DIR,
    ARCHIVE,
)
def cmd_lineage(args: argparse.Namespace) -> int:
    from nbmill.models.lineage import trace
    from nbmill.records.lineage import as_text, broken

    settings = reading(args, whole=True)
    collect = Path(args.collect_dir) if args.collect_dir else settings.collect_dir
    links = trace(args.target, settings, collect)
    data = {"target": args.target, "links": [link.as_dict() for link in links]}
    return output(
        args, data, lambda: as_text(args.target, links), DIFFERENT if broken(links) else OK
    )
