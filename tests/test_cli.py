"""The command line is a thin shell: help for everything, errors without tracebacks."""

import argparse

from nbmill import cli
from nbmill.pipeline.progress import ConsoleProgress
from tests.conftest import ROOT, nbmill


def undocumented(parser: argparse.ArgumentParser) -> list[str]:
    """What a user of ``nbmill --help`` / ``nbmill CMD --help`` would find without text."""
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            listed = {choice.dest: choice.help for choice in action._choices_actions}
            for name, command in action.choices.items():
                if not listed.get(name):
                    missing.append(f"{name}: no line in the command list")
                if not command.description:
                    missing.append(f"{name}: no description")
                missing += [f"{name}: {m}" for m in undocumented(command)]
        elif not action.help:
            missing.append(f"option {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_every_command_and_option_has_help_text():
    assert cli.commands(cli.build_parser())  # there are commands to check
    assert undocumented(cli.build_parser()) == []


def test_the_help_check_finds_an_undocumented_command_and_option():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    bare = sub.add_parser("bare")
    bare.add_argument("--quiet")
    assert undocumented(parser) == [
        "bare: no line in the command list",
        "bare: no description",
        "bare: option --quiet",
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
    import io

    stream = io.StringIO()
    progress = ConsoleProgress(stream, live=False)
    progress.step_started(1, 2, "prep")
    progress.step_finished(1, 2, "prep", "completed", 1.25)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[1/2] prep  running")
    assert lines[1].startswith("[1/2] prep  completed  1.2s  (elapsed ")
