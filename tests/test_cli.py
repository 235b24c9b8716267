"""The command line is a thin shell: help for everything, errors without tracebacks."""

import pytest

from nbmill import cli
from tests.conftest import ROOT, nbmill


@pytest.mark.parametrize("name", sorted(cli.commands(cli.build_parser())))
def test_every_command_has_help_text(name):
    parser = cli.commands(cli.build_parser())[name]
    assert parser.description or parser.format_help().strip()
    for action in parser._actions:
        assert action.help, f"nbmill {name}: option {action.option_strings or action.dest}"


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
    progress = cli.ConsoleProgress(stream, live=False)
    progress.step_started(1, 2, "prep")
    progress.step_finished(1, 2, "prep", "completed", 1.25)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[1/2] prep  running")
    assert lines[1].startswith("[1/2] prep  completed  1.2s  (elapsed ")
