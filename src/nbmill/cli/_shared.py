"""What every command shares: the project and its config, and printing JSON or text."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path


def project() -> Path:
    from nbmill.project.spec import find_project_dir

    return find_project_dir(Path.cwd())


def config(args: argparse.Namespace):
    from nbmill.project.config import load_config

    runs_dir = getattr(args, "runs_dir", None)
    return load_config(project(), Path(runs_dir) if runs_dir else None)


def output(args: argparse.Namespace, data, text: Callable[[], str]) -> int:
    """``data`` as JSON with --json, else the text a person reads."""
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text())
    return 0


def table(rows: list[dict], empty: str) -> str:
    from nbmill.records.text import format_table

    return format_table(rows) if rows else empty


def json_flag(command: argparse.ArgumentParser) -> None:
    command.add_argument("--json", action="store_true", help="print JSON for scripts")


def runs_dir_flag(command: argparse.ArgumentParser) -> None:
    command.add_argument("--runs-dir", metavar="DIR", help="run folders (default: runs/)")
