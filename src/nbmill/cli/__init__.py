"""The command line: parse arguments, call the library, print. Nothing else lives here.

Each command group is a module that adds its parsers, each command's arguments beside its
handler: ``run`` (run, reproduce), ``review`` (runs, show, diff, report, verify, events
list|retry), ``lineage``, ``models`` (models list|show|history|promote|rollback, the promote
and rollback aliases, serve), ``monitor`` (traffic), ``azure`` (deploy, monitor-schedule)
and ``archive`` (archive push|list|verify).

Every command that prints a result prints a table or text for people, and JSON with
``--json``; errors and progress go to stderr. The exit codes are ``nbmill.errors``' table.
"""

from __future__ import annotations

import argparse
import atexit
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence

from nbmill import __version__
from nbmill.cli import archive, azure, lineage, models, monitor, review, run
from nbmill.cli._shared import Parser
from nbmill.errors import NbmillError, RunError, interrupted

GROUPS = (run, review, lineage, models, monitor, azure, archive)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="nbmill",
        description="Run pipelines of parameterised notebooks; keep every run as a record.",
        epilog="Exit codes: 0 ok, 1 error, 2 usage, 3 drift (--fail-on-drift), 4 a check found "
        "a difference or a broken hash, 130/143 interrupted (SIGINT/SIGTERM).",
    )
    parser.add_argument("--version", action="version", version=f"nbmill {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in GROUPS:
        for command in group.COMMANDS:
            command.add_to(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run the command's handler, and return its exit code (the table in
    ``nbmill.errors``); a usage error exits 2 from the parser."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.func
    try:
        if getattr(args, "out", None) and not args.dry_run:
            raise NbmillError("--out is where --dry-run writes: add --dry-run")
        return handler(args)
    except NbmillError as exc:
        if args.debug and not isinstance(exc, RunError):  # a run's error is in its record
            traceback.print_exc()
        _error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _error("interrupted")
        return interrupted(signal.SIGINT)


def console() -> None:
    """The ``nbmill`` command: ``main``, then the exit handlers, then exit at once. Python's
    own teardown of every module a run imported (MLflow, pandas, scikit-learn...) takes half a
    second and writes nothing: all nbmill writes is flushed and closed before ``main``
    returns."""
    # jsonschema (which nbformat imports to read any notebook) loads every optional format
    # checker installed. rfc3987-syntax, here through nbdime -> jupyter_server ->
    # jupyter-events, compiles a grammar when imported: 0.8 s for every command that reads a
    # notebook. No schema nbmill validates uses its IRI formats, so the command goes without.
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[assignment]
    code = main()
    atexit._run_exitfuncs()  # what the modules asked to run at exit (logging, finalizers)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _error(message: str) -> None:
    red = sys.stderr.isatty() and not os.environ.get("NO_COLOR")
    text = f"error: {message}"
    print(f"\033[31m{text}\033[0m" if red else text, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
