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


def _project():
    from pathlib import Path

    from nbmill.spec import find_project_dir

    return find_project_dir(Path.cwd())


def _config(args: argparse.Namespace):
    from pathlib import Path

    from nbmill.config import load_config

    runs_dir = getattr(args, "runs_dir", None)
    return load_config(_project(), Path(runs_dir) if runs_dir else None)


def _output(args: argparse.Namespace, data, text: Callable[[], str]) -> int:
    """``data`` as JSON with --json, else the text a person reads."""
    if args.json:
        import json

        print(json.dumps(data, indent=2, default=str))
    else:
        print(text())
    return 0


def _table(rows: list[dict], empty: str) -> str:
    from nbmill.review import format_table

    return format_table(rows) if rows else empty


def cmd_events(args: argparse.Namespace) -> int:
    from nbmill.events import filter_events, retry_spooled
    from nbmill.ledger import Ledger

    config = _config(args)
    if args.action == "retry":
        delivered, problems = retry_spooled(config)
        for problem in problems:
            print(f"kept: {problem}", file=sys.stderr)
        print(f"delivered {delivered} spooled event(s); {len(problems)} still spooled")
        return 1 if problems else 0
    events = filter_events(Ledger(config.ledger).events(), args.type, args.subject, args.since)
    rows = [
        {
            "time": e["time"],
            "type": e["type"],
            "subject": e["subject"],
            "who": e["data"].get("who", ""),
        }
        for e in events
    ]
    return _output(args, events, lambda: _table(rows, "no events"))


def cmd_verify(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nbmill.verify import verify

    config = _config(args)
    run_dir = None
    if args.run:
        from nbmill.review import find_run

        run_dir = Path(config.runs_dir) / find_run(config.runs_dir, args.run)["id"]
    for line in verify(config.runs_dir, config.ledger, run_dir):
        print(f"ok: {line}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from nbmill.review import list_runs, runs_table

    config = _config(args)
    runs = list_runs(config.runs_dir)
    rows = runs_table(runs, list(config.key_metrics) if config.key_metrics else None)
    return _output(args, rows, lambda: _table(rows, f"no runs in {config.runs_dir}"))


def cmd_show(args: argparse.Namespace) -> int:
    from nbmill.review import find_run, format_run

    run = find_run(_config(args).runs_dir, args.run)
    return _output(args, run, lambda: format_run(run))


def cmd_diff(args: argparse.Namespace) -> int:
    from nbmill.review import diff_runs, find_run, format_diff

    runs_dir = _config(args).runs_dir
    diff = diff_runs(find_run(runs_dir, args.run_a), find_run(runs_dir, args.run_b))
    return _output(args, diff, lambda: format_diff(diff))


def cmd_report(args: argparse.Namespace) -> int:
    from nbmill.ledger import Ledger
    from nbmill.report import write_site
    from nbmill.review import list_runs

    config = _config(args)
    index = write_site(
        config.runs_dir,
        list_runs(config.runs_dir),
        list(Ledger(config.ledger).entries()),
        key_metrics=list(config.key_metrics) if config.key_metrics else None,
    )
    print(f"report: {index}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from nbmill.registry import list_models

    rows = list_models(args.name, project_dir=_project())
    table = [
        {
            "name": r["name"],
            "version": r["version"],
            "aliases": ",".join(r["aliases"]),
            "run": r["run_id"] or "",
            "created": r["created"],
            **{k: v for k, v in r["metrics"].items() if k.startswith("evaluate.")},
        }
        for r in rows
    ]
    return _output(args, rows, lambda: _table(table, "no registered models"))


def _print_move(move) -> None:
    before = f" (was version {move.previous_version})" if move.previous_version else ""
    print(f"{move.model}@{move.alias} -> version {move.version}{before}; by {move.who}: {move.why}")


def cmd_promote(args: argparse.Namespace) -> int:
    from nbmill.registry import promote

    _print_move(promote(args.name, args.version, args.to, args.reason, project_dir=_project()))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from nbmill.registry import rollback

    _print_move(rollback(args.name, args.reason, project_dir=_project()))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nbmill.serve import serve

    project = _project()
    collect = Path(args.collect_dir) if args.collect_dir else project / "collected"
    serve(
        args.model,
        project,
        host=args.host,
        port=args.port,
        workers=args.workers,
        collect_dir=None if args.no_collect else collect,
        announce=lambda line: print(line, flush=True),
    )
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

    def review(name: str, help_: str, description: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_, description=description)
        command.add_argument("--runs-dir", metavar="DIR", help="run folders (default: runs/)")
        return command

    def json_flag(command: argparse.ArgumentParser) -> None:
        command.add_argument("--json", action="store_true", help="print JSON for scripts")

    runs = review(
        "runs",
        "list runs: id, when, who, why, status, key metrics",
        "List the runs in the runs folder, newest first.",
    )
    json_flag(runs)
    runs.set_defaults(func=cmd_runs)

    show = review("show", "show one run's record", "Show a run: provenance, steps, metrics.")
    show.add_argument("run", help="run id, unique prefix, run folder, or 'latest'")
    json_flag(show)
    show.set_defaults(func=cmd_show)

    diff = review(
        "diff",
        "compare two runs",
        "Compare params, metrics, data and environment hashes, and commits.",
    )
    diff.add_argument("run_a", help="the first run (id, prefix, folder or 'latest')")
    diff.add_argument("run_b", help="the second run")
    json_flag(diff)
    diff.set_defaults(func=cmd_diff)

    report = review(
        "report",
        "write the static HTML report of all runs and the ledger",
        "Write runs/index.html (every run, linking its notebooks) and runs/ledger.html.",
    )
    report.set_defaults(func=cmd_report)

    verify = review(
        "verify",
        "check records and the ledger for tampering",
        "Re-hash every archived file and walk the ledger's hash chain; exit 1 "
        "naming the first changed file or entry.",
    )
    verify.add_argument("run", nargs="?", help="one run (default: the ledger and every run)")
    verify.set_defaults(func=cmd_verify)

    models = sub.add_parser(
        "models",
        help="list registered model versions",
        description="Registered versions: aliases, nbmill run, metrics.",
    )
    models.add_argument("name", nargs="?", help="one model (default: all)")
    json_flag(models)
    models.set_defaults(func=cmd_models)

    promote = sub.add_parser(
        "promote",
        help="move an alias (production) to a model version",
        description="Move an alias to a version; the move is recorded in "
        "the ledger (nbmill.model.promoted) with who and why.",
    )
    promote.add_argument("name", help="registered model name")
    promote.add_argument("version", help="version to promote")
    promote.add_argument("--to", default="production", help="alias to move (production)")
    promote.add_argument("--reason", required=True, help="why (kept in the ledger)")
    promote.set_defaults(func=cmd_promote)

    rollback = sub.add_parser(
        "rollback",
        help="move production back to the previous version",
        description="Move the production alias back to the version that "
        "held it before; recorded in the ledger.",
    )
    rollback.add_argument("name", help="registered model name")
    rollback.add_argument("--reason", required=True, help="why (kept in the ledger)")
    rollback.set_defaults(func=cmd_rollback)

    serve = sub.add_parser(
        "serve",
        help="serve a model over HTTP: POST /score, GET /health, GET /metrics",
        description="Serve a registered model (NAME@ALIAS or NAME/VERSION), a package made by "
        "the deploy step, or an MLflow model folder. /score needs 'Authorization: Bearer KEY' "
        "(KEY from NBMILL_SERVE_KEY, else .nbmill/serve.key, generated on first use).",
    )
    serve.add_argument("model", help="NAME@ALIAS, NAME/VERSION, or a package/model folder")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=5001, help="port to listen on (5001)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (1)")
    serve.add_argument(
        "--collect-dir",
        metavar="DIR",
        help="where scored requests are collected (default: collected/)",
    )
    serve.add_argument("--no-collect", action="store_true", help="do not collect requests")
    serve.set_defaults(func=cmd_serve)

    events = review(
        "events",
        "list lifecycle events, or retry spooled deliveries",
        "List events from the ledger (CloudEvents), filtered; `nbmill events retry` "
        "redelivers events a sink did not accept.",
    )
    events.add_argument(
        "action",
        nargs="?",
        choices=["list", "retry"],
        default="list",
        help="list (default) or retry spooled deliveries",
    )
    events.add_argument("--type", help="event type, e.g. nbmill.run.failed or nbmill.model.*")
    events.add_argument("--subject", help="subject prefix, e.g. runs/20261129")
    events.add_argument("--since", metavar="TIME", help="ISO 8601 UTC time, e.g. 2026-11-29")
    json_flag(events)
    events.set_defaults(func=cmd_events)
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
