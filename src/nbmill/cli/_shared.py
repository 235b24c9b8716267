"""What every command shares: the project and its config, and printing JSON or text."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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


@dataclass(frozen=True)
class Command:
    """One subcommand: its name and help, its arguments, and the function that handles it."""

    name: str
    help: str
    description: str
    arguments: tuple[tuple[tuple[str, ...], dict[str, Any]], ...]
    handler: Callable[[argparse.Namespace], int]

    def add_to(self, sub) -> None:
        parser = sub.add_parser(self.name, help=self.help, description=self.description)
        for flags, options in self.arguments:
            parser.add_argument(*flags, **options)
        parser.set_defaults(func=self.handler)


def arg(*flags: str, **options: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    """An argument of a command, as ``ArgumentParser.add_argument`` takes it."""
    return flags, options


JSON = arg("--json", action="store_true", help="print JSON for scripts")
RUNS_DIR = arg("--runs-dir", metavar="DIR", help="run folders (default: runs/)")


def command(commands: list[Command], name: str, help: str, description: str, *arguments):
    """Declare the decorated function as the handler of ``nbmill NAME`` with ``arguments``."""

    def register(handler: Callable[[argparse.Namespace], int]):
        commands.append(Command(name, help, description, arguments, handler))
        return handler

    return register
