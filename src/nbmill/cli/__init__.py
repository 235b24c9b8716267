"""The command line: parse arguments, call the library, print. Nothing else lives here.

Each command group is a module that adds its parsers, each command's arguments beside its
handler: ``run``, ``review`` (runs, show, diff, report, verify, events), ``models`` (models,
promote, rollback, serve).
"""

from __future__ import annotations

import argparse
import atexit
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from nbmill import __version__
from nbmill.cli import azure, lineage, models, monitor, review, run
from nbmill.errors import NbmillError, RunError, RunInterrupted

GROUPS = (run, review, lineage, models, monitor, azure)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nbmill",
        description="Run pipelines of parameterised notebooks; keep every run as a record.",
    )
    parser.add_argument("--version", action="version", version=f"nbmill {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in GROUPS:
        for command in group.COMMANDS:
            command.add_to(sub)
    return parser


def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every subcommand's parser, by name (a test checks each has help text)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.func
    try:
        return handler(args)
    except RunInterrupted as exc:
        _error(str(exc))
        return exc.exit_code
    except RunError as exc:
        _error(str(exc))
        return 1
    except NbmillError as exc:
        if args.debug:
            traceback.print_exc()
        _error(str(exc))
        return 1
    except KeyboardInterrupt:
        _error("interrupted")
        return 130


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
