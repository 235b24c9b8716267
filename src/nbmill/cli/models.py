"""The registry and serving: ``nbmill models``, ``promote``, ``rollback`` and ``serve``."""

from __future__ import annotations

import argparse
from pathlib import Path

from nbmill.cli._shared import JSON, Command, arg, command, output, project, table

COMMANDS: list[Command] = []
NAME = arg("name", help="registered model name")
REASON = arg("--reason", required=True, help="why (kept in the ledger)")


@command(
    COMMANDS,
    "models",
    "list registered model versions, or an alias's history",
    "Registered versions: aliases, nbmill run, metrics. `nbmill models history NAME` lists "
    "every alias move from the ledger (version, from, who, why, when); with --at TIME, which "
    "version held each alias then.",
    arg("name", nargs="?", help="one model (default: all), or `history`"),
    arg("model", nargs="?", help="with history: the model"),
    arg("--at", metavar="TIME", help="with history: which version held each alias at TIME (ISO)"),
    arg("--alias", help="with history: one alias"),
    JSON,
)
def cmd_models(args: argparse.Namespace) -> int:
    if args.name == "history":
        return _history(args)
    from nbmill.models.registry import list_models

    rows = list_models(args.name, project_dir=project())
    shown = [
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
    return output(args, rows, lambda: table(shown, "no registered models"))


def _history(args: argparse.Namespace) -> int:
    from nbmill.errors import NbmillError
    from nbmill.governance.ledger import Ledger
    from nbmill.models.history import holder_at, moves
    from nbmill.project.config import load_config

    if not args.model:
        raise NbmillError("give the model: nbmill models history NAME [--at TIME]")
    history = moves(Ledger(load_config(project()).ledger).events(), args.model, args.alias)
    if args.at is None:
        rows = [
            {k: m[k] or "" for k in ("time", "alias", "version", "from", "action", "who", "why")}
            for m in history
        ]
        return output(
            args, history, lambda: table(rows, f"no alias moves of '{args.model}' in the ledger")
        )
    aliases = sorted({m["alias"] for m in history})
    held = {alias: holder_at(history, alias, args.at) for alias in aliases}
    rows = [
        {
            "alias": alias,
            "version": m["version"] if m else "(none)",
            "since": m["time"] if m else "",
            "who": m["who"] if m else "",
            "why": m["why"] if m else "",
        }
        for alias, m in held.items()
    ]
    return output(args, held, lambda: f"at {args.at}:\n" + table(rows, "no alias was set"))


def _print_move(move) -> None:
    before = f" (was version {move.previous_version})" if move.previous_version else ""
    print(f"{move.model}@{move.alias} -> version {move.version}{before}; by {move.who}: {move.why}")


@command(
    COMMANDS,
    "promote",
    "move an alias (production) to a model version",
    "Move an alias to a version; the move is recorded in the ledger (nbmill.model.promoted) "
    "with who and why.",
    NAME,
    arg("version", help="version to promote"),
    arg("--to", default="production", help="alias to move (production)"),
    REASON,
)
def cmd_promote(args: argparse.Namespace) -> int:
    from nbmill.models.aliases import promote

    _print_move(promote(args.name, args.version, args.to, args.reason, project_dir=project()))
    return 0


@command(
    COMMANDS,
    "rollback",
    "move production back to the previous version",
    "Move the production alias back to the version that held it before; recorded in the ledger.",
    NAME,
    REASON,
)
def cmd_rollback(args: argparse.Namespace) -> int:
    from nbmill.models.aliases import rollback

    _print_move(rollback(args.name, args.reason, project_dir=project()))
    return 0


@command(
    COMMANDS,
    "serve",
    "serve a model over HTTP: POST /score, GET /health, GET /metrics",
    "Serve a registered model (NAME@ALIAS or NAME/VERSION), a package made by the deploy step, "
    "or an MLflow model folder. /score needs 'Authorization: Bearer KEY' (KEY from "
    "NBMILL_SERVE_KEY, else .nbmill/serve.key, generated on first use).",
    arg("model", help="NAME@ALIAS, NAME/VERSION, or a package/model folder"),
    arg("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)"),
    arg("--port", type=int, default=5001, help="port to listen on (5001)"),
    arg("--workers", type=int, default=1, help="worker processes (1)"),
    arg("--collect-dir", metavar="DIR", help="where requests are collected (nbmill.yml's)"),
    arg("--no-collect", action="store_true", help="do not collect requests"),
    arg("--endpoint", help="the endpoint name collected data is filed under (the model's name)"),
    arg("--deployment", default="local", help="the deployment name, likewise (local)"),
)
def cmd_serve(args: argparse.Namespace) -> int:
    from nbmill.project.config import load_config
    from nbmill.serving.startup import serve

    here = project()
    collect = Path(args.collect_dir) if args.collect_dir else load_config(here).collect_dir
    serve(
        args.model,
        here,
        host=args.host,
        port=args.port,
        workers=args.workers,
        collect_dir=None if args.no_collect else collect,
        announce=lambda line: print(line, flush=True),
        endpoint=args.endpoint,
        deployment=args.deployment,
    )
    return 0
