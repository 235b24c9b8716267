"""The registry and serving: ``nbmill models``, ``promote``, ``rollback`` and ``serve``."""

from __future__ import annotations

import argparse
from pathlib import Path

from nbmill.cli._shared import json_flag, output, project, table


def add_commands(sub) -> None:
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


def cmd_models(args: argparse.Namespace) -> int:
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


def _print_move(move) -> None:
    before = f" (was version {move.previous_version})" if move.previous_version else ""
    print(f"{move.model}@{move.alias} -> version {move.version}{before}; by {move.who}: {move.why}")


def cmd_promote(args: argparse.Namespace) -> int:
    from nbmill.models.aliases import promote

    _print_move(promote(args.name, args.version, args.to, args.reason, project_dir=project()))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from nbmill.models.aliases import rollback

    _print_move(rollback(args.name, args.reason, project_dir=project()))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from nbmill.serving.startup import serve

    here = project()
    collect = Path(args.collect_dir) if args.collect_dir else here / "collected"
    serve(
        args.model,
        here,
        host=args.host,
        port=args.port,
        workers=args.workers,
        collect_dir=None if args.no_collect else collect,
        announce=lambda line: print(line, flush=True),
    )
    return 0
