"""Reviewing runs: ``nbmill runs``, ``show``, ``diff``, ``report``, ``verify`` and ``events
list|retry``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nbmill.cli._shared import (
    ARCHIVE,
    RUNS_DIR,
    Commands,
    Group,
    arg,
    config,
    note,
    output,
    pull,
    reading,
    table,
)
from nbmill.errors import DIFFERENT, ERROR, OK

COMMANDS = Commands()
EVENTS = Commands()
RUN = "run id, unique prefix, run folder, or 'latest'"


@COMMANDS.command(
    "runs",
    "list runs: id, when, who, why, status, key metrics",
    "List the runs in the runs folder (with an archive, every run in it), newest first.",
    RUNS_DIR,
    ARCHIVE,
)
def cmd_runs(args: argparse.Namespace) -> int:
    from nbmill.records.review import list_runs, runs_table

    settings = reading(args)
    runs = list_runs(settings.runs_dir)
    rows = runs_table(runs, list(settings.key_metrics) if settings.key_metrics else None)
    return output(args, rows, lambda: table(rows, f"no runs in {settings.runs_dir}"))


@COMMANDS.command(
    "show",
    "show one run's record",
    "Show a run: provenance, steps, metrics.",
    arg("run", help=RUN),
    RUNS_DIR,
    ARCHIVE,
)
def cmd_show(args: argparse.Namespace) -> int:
    from nbmill.records.review import find_run
    from nbmill.records.text import format_run

    settings = reading(args)
    run = find_run(settings.runs_dir, args.run)
    pull(settings, [run["id"]])
    return output(args, run, lambda: format_run(run))


@COMMANDS.command(
    "diff",
    "compare two runs",
    "Compare params, metrics, data and environment hashes, and commits; with --notebooks, "
    "also each step's executed notebooks (sources and outputs, with nbdime).",
    arg("run_a", help=f"the first run ({RUN})"),
    arg("run_b", help="the second run"),
    arg(
        "--notebooks",
        action="store_true",
        help="also diff the executed notebook of every step both runs have",
    ),
    arg(
        "--html",
        metavar="DIR",
        help="write each step's notebook diff as DIR/<step>.html (implies --notebooks)",
    ),
    RUNS_DIR,
    ARCHIVE,
)
def cmd_diff(args: argparse.Namespace) -> int:
    from nbmill.records.review import diff_runs, find_run
    from nbmill.records.text import format_diff

    settings = reading(args)
    runs_dir = settings.runs_dir
    run_a, run_b = find_run(runs_dir, args.run_a), find_run(runs_dir, args.run_b)
    pull(settings, [run_a["id"], run_b["id"]])
    diff = diff_runs(run_a, run_b)
    if not (args.notebooks or args.html):
        return output(args, diff, lambda: format_diff(diff))

    from nbmill.records.notebook_diff import format_notebook_diffs, notebook_diffs, write_html

    notebooks = notebook_diffs(
        _run_dir(runs_dir, args.run_a, run_a), _run_dir(runs_dir, args.run_b, run_b)
    )
    diff["notebooks"] = {step: found.as_dict() for step, found in notebooks.items()}
    pages = write_html(notebooks, Path(args.html)) if args.html else []
    both = [step for step in run_a["steps"] if step in run_b["steps"]]
    status = output(
        args,
        diff,
        lambda: f"{format_diff(diff)}\n\n{format_notebook_diffs(notebooks, both)}",
    )
    for page in pages:
        print(f"html: {page}", file=sys.stderr if args.json else sys.stdout)
    return status


def _run_dir(runs_dir: Path, ref: str, run: dict) -> Path:
    """The folder of a run found by ``ref``: the folder given, else ``<runs>/<id>``."""
    given = Path(ref)
    if given.name == "run.json" and given.is_file():
        return given.parent
    if (given / "run.json").is_file():
        return given
    return Path(runs_dir) / run["id"]


@COMMANDS.command(
    "report",
    "write the static HTML report of all runs and the ledger",
    "Write runs/index.html (every run, linking its notebooks) and runs/ledger.html (with an "
    "archive: of every run in it, in its mirror under .nbmill/archive/).",
    RUNS_DIR,
    ARCHIVE,
)
def cmd_report(args: argparse.Namespace) -> int:
    from nbmill.governance.ledger import Ledger
    from nbmill.records.report import write_site
    from nbmill.records.review import list_runs

    settings = reading(args, whole=True)
    index = write_site(
        settings.runs_dir,
        list_runs(settings.runs_dir),
        list(Ledger(settings.ledger).entries()),
        key_metrics=list(settings.key_metrics) if settings.key_metrics else None,
    )
    return output(args, {"report": str(index)}, lambda: f"report: {index}")


@COMMANDS.command(
    "verify",
    "check records and the ledger for tampering",
    "Re-hash every archived file and walk the ledger's hash chain. Exit 0 when everything "
    f"matches; exit {DIFFERENT}, naming the first changed file or entry, when something does not.",
    arg("run", nargs="?", help="one run (default: the ledger and every run)"),
    RUNS_DIR,
    ARCHIVE,
)
def cmd_verify(args: argparse.Namespace) -> int:
    from nbmill.governance.ledger import LedgerError
    from nbmill.records.review import find_run
    from nbmill.records.verify import IntegrityError, verify

    settings = config(args)
    if settings.archive and not args.run:  # the archive whole, as `nbmill archive verify`
        from nbmill.cli.archive import verified

        return verified(args, settings)
    if settings.archive:
        settings = reading(args)
        pull(settings, [find_run(settings.runs_dir, args.run)["id"]])
    run_dir = None
    if args.run:
        run_dir = Path(settings.runs_dir) / find_run(settings.runs_dir, args.run)["id"]
    try:
        checked = verify(settings.runs_dir, settings.ledger, run_dir)
    except (IntegrityError, LedgerError) as exc:  # found, not failed: a result, exit 4
        problem = str(exc)
        found = {"ok": False, "checked": [], "problem": problem}
        return output(args, found, lambda: f"BROKEN: {problem}", DIFFERENT)
    found = {"ok": True, "checked": checked, "problem": None}
    return output(args, found, lambda: "\n".join(f"ok: {line}" for line in checked))


FILTERS = (
    arg("--type", help="event type, e.g. nbmill.run.failed or nbmill.model.*"),
    arg("--subject", help="subject prefix, e.g. runs/20261129"),
    arg("--since", metavar="TIME", help="ISO 8601 UTC time, e.g. 2026-11-29"),
)


@EVENTS.command(
    "list",
    "list lifecycle events from the ledger (the default verb)",
    "List events from the ledger (CloudEvents), filtered: time, type, subject, who; --json "
    "gives the events themselves.",
    *FILTERS,
    RUNS_DIR,
    ARCHIVE,
)
def cmd_events_list(args: argparse.Namespace) -> int:
    from nbmill.governance.events import filter_events
    from nbmill.governance.ledger import Ledger

    settings = reading(args)
    events = filter_events(Ledger(settings.ledger).events(), args.type, args.subject, args.since)
    rows = [
        {
            "time": e["time"],
            "type": e["type"],
            "subject": e["subject"],
            "who": e["data"].get("who", ""),
        }
        for e in events
    ]
    return output(args, events, lambda: table(rows, "no events"))


@EVENTS.command(
    "retry",
    "send again the events a sink did not accept",
    f"Redeliver the events still spooled for each sink (runs/.spool/). Exit {ERROR} when some "
    "are still spooled afterwards; each is named on stderr.",
    RUNS_DIR,
)
def cmd_events_retry(args: argparse.Namespace) -> int:
    from nbmill.governance.events import retry_spooled

    delivered, problems = retry_spooled(config(args))
    for problem in problems:
        note(f"kept: {problem}")
    result = {"delivered": delivered, "still_spooled": len(problems), "problems": problems}
    text = f"delivered {delivered} spooled event(s); {len(problems)} still spooled"
    return output(args, result, lambda: text, ERROR if problems else OK)


COMMANDS.append(
    Group(
        "events",
        "list lifecycle events, or retry spooled deliveries",
        "Events from the ledger: `nbmill events list` (also plain `nbmill events`, with the "
        "same filters), and `nbmill events retry` to redeliver what a sink did not accept.",
        EVENTS,
        default="list",
    )
)
