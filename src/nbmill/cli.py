"""The command line: parse arguments, call the library, print. Nothing else lives here."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence

from nbmill import __version__
from nbmill.errors import NbmillError, RunError


class ConsoleProgress:
    """`[2/4] train  ok  7.9s`: a live line on a terminal, plain lines in CI and logs."""

    def __init__(self, stream=None, live: bool | None = None):
        self.stream = stream or sys.stderr
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.live = tty and not os.environ.get("CI") if live is None else live
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()
        self._started = time.monotonic()

    def step_started(self, index: int, total: int, step: str) -> None:
        label = f"[{index}/{total}] {step}"
        if not self.live:
            self._write(f"{label}  running  (elapsed {self._elapsed()})\n")
            return
        self._stop.clear()
        begun = time.monotonic()

        def tick() -> None:
            while not self._stop.wait(0.25):
                self._write(
                    f"\r{label}  running {time.monotonic() - begun:5.1f}s  "
                    f"(elapsed {self._elapsed()})"
                )

        self._ticker = threading.Thread(target=tick, daemon=True)
        self._ticker.start()

    def step_finished(self, index: int, total: int, step: str, status: str, seconds: float) -> None:
        if self._ticker:
            self._stop.set()
            self._ticker.join()
            self._ticker = None
        prefix = "\r\033[K" if self.live else ""
        self._write(
            f"{prefix}[{index}/{total}] {step}  {status}  {seconds:.1f}s  "
            f"(elapsed {self._elapsed()})\n"
        )

    def _elapsed(self) -> str:
        return f"{time.monotonic() - self._started:.1f}s"

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def cmd_run(args: argparse.Namespace) -> int:
    from nbmill.runner import run

    record = run(
        args.pipeline,
        params_path=args.params,
        overrides=args.param,
        reason=args.reason,
        runs_dir=args.runs_dir,
        progress=ConsoleProgress(),
        warm=not args.no_warm,
    )
    metrics = record.data.get("metrics", {})
    print(f"run {record.id} completed in {record.data['duration_s']:.1f}s")
    for name, value in metrics.items():
        print(f"  {name} = {value:.4g}")
    print(f"record: {record.dir}")
    print(f"report: {record.dir / 'index.html'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nbmill",
        description="Run pipelines of parameterised notebooks; keep every run as a record.",
    )
    parser.add_argument("--version", action="version", version=f"nbmill {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

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


def _error(message: str) -> None:
    red = sys.stderr.isatty() and not os.environ.get("NO_COLOR")
    text = f"error: {message}"
    print(f"\033[31m{text}\033[0m" if red else text, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
