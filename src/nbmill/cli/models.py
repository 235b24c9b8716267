"""The registry and serving: ``nbmill models list|show|history|promote|rollback`` (``nbmill
promote`` and ``nbmill rollback`` are aliases), ``nbmill serve`` and ``nbmill score`` (batch)."""

from __future__ import annotations

import argparse
from pathlib import Path

from nbmill.cli._shared import (
    ARCHIVE,
    RUNS_DIR,
    Commands,
    Group,
    arg,
    output,
    project,
    reading,
    table,
)

COMMANDS = Commands()
MODELS = Commands()
NAME = arg("name", help="registered model name")
REASON = arg("--reason", required=True, help="why (kept in the ledger)")


@MODELS.command(
    "list",
    "list registered model versions: aliases, run, metrics (the default verb)",
    "Registered versions, each model's newest first: aliases, nbmill run, created, and the "
    "evaluate step's metrics (--json: every field and metric).",
    arg("name", nargs="?", help="one model (default: all)"),
)
def cmd_models_list(args: argparse.Namespace) -> int:
    from nbmill.models.registry import list_models

    rows = list_models(args.name, project_dir=project())
    return output(args, rows, lambda: table([_row(r) for r in rows], "no registered models"))


def _row(r: dict) -> dict:
    return {
        "name": r["name"],
        "version": r["version"],
        "aliases": ",".join(r["aliases"]),
        "run": r["run_id"] or "",
        "created": r["created"],
        **{k: v for k, v in r["metrics"].items() if k.startswith("evaluate.")},
    }


@MODELS.command(
    "show",
    "show one model version: its tags, aliases and metrics",
    "One registered version, NAME/VERSION or NAME@ALIAS: aliases, the nbmill run and commit "
    "that made it, the sha256 of its files, the gate's reason, and its run's metrics.",
    arg("model", help="NAME/VERSION or NAME@ALIAS"),
)
def cmd_models_show(args: argparse.Namespace) -> int:
    from nbmill.models.registry import describe

    row = describe(args.model, project_dir=project())

    def text() -> str:
        fields = {k: v for k, v in row.items() if k != "metrics"}
        fields["aliases"] = ", ".join(row["aliases"])
        lines = [f"{k:<17} {'' if v is None else v}" for k, v in fields.items()]
        lines += [f"  {k} = {v:.4g}" for k, v in row["metrics"].items()]
        return "\n".join(lines)

    return output(args, row, text)


@MODELS.command(
    "history",
    "list every alias move of a model, from the ledger",
    "Every alias move of NAME from the ledger (version, from, action, who, why, when); with "
    "--at TIME, which version held each alias then.",
    NAME,
    arg("--at", metavar="TIME", help="which version held each alias at TIME (ISO 8601)"),
    arg("--alias", help="one alias only"),
    RUNS_DIR,
    ARCHIVE,
)
def cmd_models_history(args: argparse.Namespace) -> int:
    from nbmill.governance.ledger import Ledger
    from nbmill.models.history import holder_at, moves

    history = moves(Ledger(reading(args).ledger).events(), args.name, args.alias)
    if args.at is None:
        rows = [
            {k: m[k] or "" for k in ("time", "alias", "version", "from", "action", "who", "why")}
            for m in history
        ]
        return output(
            args, history, lambda: table(rows, f"no alias moves of '{args.name}' in the ledger")
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


def _moved(args: argparse.Namespace, move) -> int:
    before = f" (was version {move.previous_version})" if move.previous_version else ""
    text = f"{move.model}@{move.alias} -> version {move.version}{before}; by {move.who}: {move.why}"
    return output(args, move.as_dict(), lambda: text)


@MODELS.command(
    "promote",
    "move an alias (production) to a model version",
    "Move an alias to a version; the move is recorded in the ledger (nbmill.model.promoted) "
    "with who and why.",
    NAME,
    arg("version", help="version to promote"),
    arg("--to", default="production", help="alias to move (production)"),
    REASON,
    arg("--approved-by", metavar="WHO", help="who approved the move (kept in the ledger)"),
)
def cmd_promote(args: argparse.Namespace) -> int:
    from nbmill.models.aliases import promote

    moved = promote(
        args.name, args.version, args.to, args.reason,
        approved_by=args.approved_by, project_dir=project(),
    )  # fmt: skip
    return _moved(args, moved)


@MODELS.command(
    "rollback",
    "move production back to the previous version",
    "Move the production alias back to the version that held it before; recorded in the ledger.",
    NAME,
    REASON,
)
def cmd_rollback(args: argparse.Namespace) -> int:
    from nbmill.models.aliases import rollback

    return _moved(args, rollback(args.name, args.reason, project_dir=project()))


COMMANDS += [
    Group(
        "models",
        "the model registry: list, show, history, promote, rollback",
        "Registered models: `nbmill models list [NAME]` (also plain `nbmill models`), `show "
        "NAME/VERSION|NAME@ALIAS`, `history NAME`, `promote NAME VERSION`, `rollback NAME`.",
        MODELS,
        default="list",
    ),
    MODELS.named("promote").alias("promote", "models promote"),
    MODELS.named("rollback").alias("rollback", "models rollback"),
]


@COMMANDS.command(
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
    arg(
        "--follow",
        action="store_true",
        help="with NAME@ALIAS: switch, with no failed request, when the ledger records that "
        "the alias moved (each answer names its version in x-nbmill-model-version)",
    ),
    prints_result=False,  # it runs until stopped
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
        follow=args.follow,
    )
    return 0


@COMMANDS.command(
    "score",
    "score a CSV or Parquet file in batch, on every core",
    "Score every row of --input with a registered model (NAME@ALIAS or NAME/VERSION), a "
    "package or an MLflow model folder, into --output (the input's columns and 'prediction'), "
    "chunk by chunk on every core; each chunk is collected like an online request "
    "(deployment 'batch'). A bad cell stops it naming the row and column, after the rows "
    "before it were written.",
    arg("model", help="NAME@ALIAS, NAME/VERSION, or a package/model folder"),
    arg("--input", required=True, metavar="FILE", help="a .csv or .parquet file"),
    arg("--output", required=True, metavar="FILE", help="a .csv or .parquet file to write"),
    arg("--chunk-rows", type=int, default=50_000, metavar="N", help="rows a chunk (50000)"),
    arg("--workers", type=int, metavar="N", help="processes scoring (default: the CPUs)"),
    arg("--collect-dir", metavar="DIR", help="where chunks are collected (nbmill.yml's)"),
    arg("--no-collect", action="store_true", help="do not collect"),
)
def cmd_score(args: argparse.Namespace) -> int:
    from nbmill.project.config import load_config
    from nbmill.serving.batch import score_file

    here = project()
    collect = Path(args.collect_dir) if args.collect_dir else load_config(here).collect_dir
    if args.chunk_rows < 1:
        from nbmill.errors import NbmillError

        raise NbmillError(f"--chunk-rows {args.chunk_rows}: give 1 or more")
    done = score_file(
        args.model, here, Path(args.input), Path(args.output),
        collect_dir=None if args.no_collect else collect,
        chunk_rows=args.chunk_rows, workers=args.workers,
    )  # fmt: skip
    result = done.as_dict()
    rate = result["rows_per_s"]
    text = (f"scored {done.rows} rows in {done.chunks} chunks in {done.seconds:.2f} s "
            f"({rate} rows/s, {done.workers} processes): {done.output}")  # fmt: skip
    return output(args, result, lambda: text)
