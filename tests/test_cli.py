"""The command line is a thin shell: help for everything, errors without tracebacks.

Commands are found the way a user finds them: in ``nbmill --help``, then in each command's own
``--help`` (a noun lists its verbs there)."""

from __future__ import annotations

import argparse
import contextlib
import io
import re

import pytest

from nbmill import cli
from nbmill.pipeline.progress import ConsoleProgress
from tests.conftest import ROOT, nbmill

ENTRY = re.compile(r"^(?P<indent> {2}| {4})(?P<name>\S.*?)(?: {2,}(?P<text>\S.*))?$")
WIDE = 1000  # columns: nothing in a help page wraps


def help_page(*command: str) -> str:
    """``nbmill COMMAND... --help``, as printed (in this process)."""
    page = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COLUMNS", str(WIDE))
        with contextlib.redirect_stdout(page), pytest.raises(SystemExit) as done:
            cli.main([*command, "--help"])
    assert done.value.code == 0
    return page.getvalue()


def listed(page: str) -> list[tuple[str, str, int]]:
    """Each entry of a help page's lists (arguments, options, subcommands): its name as shown,
    its text ('' if none) and its indent (4: a subcommand)."""
    lines = page.splitlines()
    rows = []
    in_list = False
    for number, line in enumerate(lines):
        if not line.startswith(" "):
            in_list = line.endswith(":") and not line.startswith("usage:")
            continue
        found = ENTRY.match(line) if in_list else None
        if found is None:
            continue  # the usage, or the text of an entry on a line of its own
        text = found["text"] or ""
        following = lines[number + 1] if number + 1 < len(lines) else ""
        if not text and following.startswith(" " * 6):
            text = following.strip()  # a long name's text is on the next line
        if not text and following.startswith("    ") and not following.startswith(" " * 5):
            continue  # COMMAND or VERB: the heading of the subcommands below it
        rows.append((found["name"], text, len(found["indent"])))
    return rows


def description(page: str) -> str:
    """The paragraph between a help page's usage and its first list."""
    blocks = page.split("\n\n")
    heading = len(blocks) < 2 or blocks[1].splitlines()[0].endswith(":")
    return "" if heading else blocks[1].strip()


def subcommands(page: str) -> list[str]:
    return [name for name, _, indent in listed(page) if indent == 4]


def command_paths() -> list[tuple[str, ...]]:
    """Every command a user can run, ``("run",)`` or ``("models", "list")``, from the help."""
    paths = []
    for name in subcommands(help_page()):
        verbs = subcommands(help_page(name))
        paths += [(name, verb) for verb in verbs] if verbs else [(name,)]
    return paths


def declared() -> list[tuple[str, ...]]:
    """Every command the command groups declare (their public ``COMMANDS`` lists)."""
    paths = []
    for group in cli.GROUPS:
        for command in group.COMMANDS:
            verbs = getattr(command, "verbs", None)
            paths += [(command.name, v.name) for v in verbs] if verbs else [(command.name,)]
    return paths


def undocumented(page: str, where: str) -> list[str]:
    """What a reader of this help page finds without text: an entry, or the description."""
    missing = [f"{where}{name}: no text" for name, text, _ in listed(page) if not text]
    if where and not description(page):
        missing.append(f"{where.strip()}: no description")
    return missing


def test_every_command_and_option_has_help_text():
    paths = command_paths()
    assert ("run",) in paths and ("models", "promote") in paths and ("events", "retry") in paths
    assert sorted(paths) == sorted(declared())  # a command without a line is not listed at all
    missing = undocumented(help_page(), "")
    for path in {path[:1] for path in paths} | set(paths):
        missing += undocumented(help_page(*path), " ".join(path) + " ")
    assert missing == []


def test_the_help_check_finds_an_undocumented_command_and_option():
    parser = argparse.ArgumentParser(prog="x")
    sub = parser.add_subparsers(metavar="COMMAND")
    bare = sub.add_parser("bare")
    bare.add_argument("--quiet")
    sub.add_parser("told", help="has a line", description="and a description")
    assert subcommands(parser.format_help()) == ["told"]  # "bare" is missing from the list
    assert undocumented(bare.format_help(), "bare ") == [
        "bare --quiet QUIET: no text",
        "bare: no description",
    ]


def test_a_missing_pipeline_file_is_an_error_not_a_traceback(tmp_path):
    done = nbmill("run", "pipelines/nope.yml", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == "error: pipelines/nope.yml: pipeline file not found"


def test_usage_errors_exit_2(tmp_path):
    assert nbmill("run", cwd=tmp_path).returncode == 2


def test_a_wrong_type_on_the_command_line_names_the_parameter():
    done = nbmill("run", "pipelines/training.yml", "-p", "train.alpha=abc", cwd=ROOT)
    assert done.returncode == 1
    assert "parameter 'alpha' should be float" in done.stderr and "got str 'abc'" in done.stderr


def test_progress_lines_show_step_count_and_elapsed():
    stream = io.StringIO()
    progress = ConsoleProgress(stream, live=False)
    progress.step_started(1, 2, "prep")
    progress.step_finished(1, 2, "prep", "completed", 1.25)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[1/2] prep  running")
    assert lines[1].startswith("[1/2] prep  completed  1.2s  (elapsed ")
