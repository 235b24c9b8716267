"""What every command shares: the project and its config, the one output option (a table for
people, ``--json`` for scripts), and how a command or a noun's verbs are declared."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbmill.errors import ERROR


def project() -> Path:
    from nbmill.project.spec import find_project_dir

    return find_project_dir(Path.cwd())


def config(args: argparse.Namespace):
    from nbmill.project.config import load_config

    use_archive(args)
    runs_dir = getattr(args, "runs_dir", None)
    return load_config(project(), Path(runs_dir) if runs_dir else None)


def use_archive(args: argparse.Namespace) -> None:
    """``--archive URL`` over NBMILL_ARCHIVE and nbmill.yml's, for this command and the
    kernels and processes it starts."""
    import os

    from nbmill.project.config import ENV_ARCHIVE, archive_location

    if getattr(args, "archive", None):
        os.environ[ENV_ARCHIVE] = archive_location(args.archive, project())


def reading(args: argparse.Namespace, whole: bool = False):
    """The config a command that reads records reads through. With an archive, its mirror
    (``nbmill.archive.mirror``) stands for the runs folder and the ledger, so the command
    prints what it prints locally, for every record in the archive; ``whole``: every record's
    files, not only run.json (lineage, report)."""
    settings = config(args)
    if not settings.archive:
        return settings
    from nbmill.records.runjson import run_dirs

    mirror = _mirror(settings)
    ids = mirror.index()
    mirror.pull_ledger()
    waiting = {folder.name for folder in run_dirs(settings.runs_dir)} - set(ids)
    if waiting:
        note(
            f"note: {len(waiting)} run(s) in {settings.runs_dir} are not in the archive yet "
            f"(running, or not pushed: `nbmill archive push`), e.g. {min(waiting)}"
        )
    if whole:
        pull(settings, ids, mirror)
    return dataclasses.replace(settings, runs_dir=mirror.runs_dir, ledger=mirror.ledger)


def pull(settings, run_ids: list[str], mirror=None) -> None:
    """These records' files into the archive's mirror, when reading through one."""
    from nbmill.errors import NbmillError

    if not settings.archive:
        return
    problems = (mirror or _mirror(settings)).pull(run_ids)
    if problems:
        raise NbmillError(f"{problems[0]}; run `nbmill archive verify` for all of it")


def _mirror(settings):
    return _mirror_of(settings.archive, settings.project_dir)


@functools.lru_cache(maxsize=4)
def _mirror_of(archive: str, project_dir: Path):
    """One mirror (and one client of the archive's store) per archive, for the command."""
    from nbmill.archive import open_archive
    from nbmill.archive.mirror import Mirror

    return Mirror.of(open_archive(archive, project_dir), project_dir)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def output(args: argparse.Namespace, data: Any, text: Callable[[], str], code: int = 0) -> int:
    """The result: ``data`` as JSON with --json, else the text a person reads; returns ``code``."""
    if args.json:
        print_json(data)
    else:
        print(text())
    return code


def table(rows: list[dict], empty: str) -> str:
    from nbmill.records.text import format_table

    return format_table(rows) if rows else empty


def note(message: str) -> None:
    """A line about how the command went (progress, a warning), never its result: stderr."""
    print(message, file=sys.stderr, flush=True)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose noun may have a default verb: with ``default_verb = "list"``,
    ``nbmill events --type X`` is ``nbmill events list --type X`` and ``nbmill models`` is
    ``nbmill models list``. Only an option (or nothing) after the noun gets it, so a name is
    never taken for a verb or the other way round."""

    default_verb: str | None = None

    def parse_known_args(self, args: Sequence[str] | None = None, namespace=None):
        if self.default_verb is not None and args is not None:
            args = list(args)
            if not args or (args[0].startswith("-") and args[0] not in ("-h", "--help")):
                args = [self.default_verb, *args]
        return super().parse_known_args(args, namespace)


@dataclass(frozen=True)
class Command:
    """One subcommand: its name and help, its arguments, and the function that handles it."""

    name: str
    help: str
    description: str
    arguments: tuple[tuple[tuple[str, ...], dict[str, Any]], ...]
    handler: Callable[[argparse.Namespace], int]
    prints_result: bool = True  # then it takes the one output option, --json

    def add_to(self, sub) -> None:
        parser = sub.add_parser(self.name, help=self.help, description=self.description)
        for flags, options in self.arguments + ((JSON,) if self.prints_result else ()):
            parser.add_argument(*flags, **options)
        parser.set_defaults(func=self.handler)

    def alias(self, name: str, of: str) -> Command:
        """The same command under another name (an older spelling), saying what it is."""
        return dataclasses.replace(
            self,
            name=name,
            help=f"alias of `nbmill {of}`",
            description=f"Alias of `nbmill {of}`. {self.description}",
        )


@dataclass(frozen=True)
class Group:
    """A noun with several verbs (``nbmill models list|show|history|promote|rollback``);
    ``default``: the verb run when the noun is followed by an option or nothing."""

    name: str
    help: str
    description: str
    verbs: list[Command]
    default: str | None = None

    def add_to(self, sub) -> None:
        parser = sub.add_parser(self.name, help=self.help, description=self.description)
        parser.default_verb = self.default
        verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
        for verb in self.verbs:
            verb.add_to(verbs)


def arg(*flags: str, **options: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    """An argument of a command, as ``ArgumentParser.add_argument`` takes it."""
    return flags, options


JSON = arg("--json", action="store_true", help="print the result as JSON (for scripts)")


def repeated(*flags: str, metavar: str, help: str) -> tuple[tuple[str, ...], dict[str, Any]]:
    """An option given once per value (``-p a=1 -p b=2``): a list, empty when not given."""
    return arg(*flags, action="append", default=[], metavar=metavar, help=help)


RUNS_DIR = arg("--runs-dir", metavar="DIR", help="run folders (default: runs/)")
ARCHIVE = arg(
    "--archive",
    metavar="URL",
    help="the team's archive: a folder or az://CONTAINER/PREFIX (default: NBMILL_ARCHIVE, else "
    "nbmill.yml's archive:)",
)
ON_AZUREML = "azureml"


DRY_RUN = arg(
    "--dry-run",
    action="store_true",
    help="write what Azure ML would get as YAML (to --out) and check it; submit nothing",
)
OUT = arg("--out", metavar="DIR", help="where --dry-run writes (default: runs/dry-run/)")


def on(*where: str, default: str, old: str | None = None) -> tuple:
    """Where a command acts, and its dry run: ``--on WHERE``, ``local`` (this machine) or
    ``azureml`` (the workspace in AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP,
    AZUREML_WORKSPACE_NAME); ``--dry-run``; ``--out DIR``; and ``old``, an older spelling of
    ``--on`` still accepted and not shown in the help. Splat it: ``*on(...)``."""
    chosen = arg("--on", choices=list(where), default=default,
                 help=f"where: {' or '.join(where)} (default: {default})")  # fmt: skip
    older = [arg(old, dest="on", choices=list(where), help=argparse.SUPPRESS)] if old else []
    return (chosen, *older, DRY_RUN, OUT)


def print_dry_run(args: argparse.Namespace, result) -> int:
    """A dry run's result (``nbmill.azure.dry_run.DryRun``): what it wrote, and valid (exit 0)
    or each problem, on stderr as any error is (exit 1; with --json the result is printed)."""
    if result.valid:
        text = f"{result.kind}: {result.written} (loaded back by the SDK and checked: valid)"
        return output(args, result.as_dict(), lambda: text)
    for problem in result.problems:
        note(f"error: {result.written}: {problem}")
    if args.json:
        print_json(result.as_dict())
    return ERROR


class Commands(list):
    """A module's commands (or a noun's verbs), each declared on its handler with
    ``@COMMANDS.command(name, help, description, *arguments)``, as click's groups do."""

    def command(self, name: str, help: str, description: str, *arguments, prints_result=True):
        """Declare the decorated function as the handler of ``nbmill NAME`` with ``arguments``;
        a command that ``prints_result`` also takes ``--json`` (the one output option)."""

        def register(handler: Callable[[argparse.Namespace], int]):
            self.append(Command(name, help, description, arguments, handler, prints_result))
            return handler

        return register

    def named(self, name: str) -> Command:
        (match,) = [c for c in self if c.name == name]
        return match
