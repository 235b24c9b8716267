"""One convention for the command line, on real processes: every command that prints a result
takes --json and prints JSON that parses; results go to stdout and errors to stderr; and the
README's exit-code table, one real case for each code."""

from __future__ import annotations

import importlib.util
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from nbmill import errors
from nbmill.azure.settings import configured
from nbmill_example import diabetes
from tests.conftest import ROOT, ServeProcess, nbmill, only_run, write_notebook
from tests.test_cli import command_paths, help_page, listed

NO_RESULT = {("serve",)}  # the service: it runs until stopped and prints where it listens
HAS_AZURE_SDK = importlib.util.find_spec("azure.ai.ml") is not None


def parsed(done: subprocess.CompletedProcess):
    """stdout as JSON; the assertion names the command's output when it is not."""
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        shown = f"{done.stdout[:2000]}\n{done.stderr[-2000:]}"
        raise AssertionError(f"not JSON on stdout:\n{shown}") from None


def empty_or_json(done: subprocess.CompletedProcess) -> None:
    if done.stdout.strip():
        parsed(done)


# --- a small project --------------------------------------------------------------------------


def pipeline(project: Path, name: str, *cells: str, parameters: str = "x = 1") -> str:
    write_notebook(project / "notebooks" / f"{name}.ipynb", parameters, *cells)
    spec = {"name": name, "steps": {name: {"notebook": f"notebooks/{name}.ipynb"}}}
    (project / "pipelines" / f"{name}.yml").write_text(yaml.safe_dump(spec))
    return f"pipelines/{name}.yml"


def quick(project: Path) -> str:
    return pipeline(
        project, "quick", "from nbmill import tracking", "tracking.log_metrics({'y': x})"
    )


def drifting(project: Path) -> str:
    """A monitoring step that records drift, as notebooks/monitor.ipynb does."""
    return pipeline(
        project,
        "watch",
        "from nbmill import tracking",
        "tracking.log_metrics({'drift_detected': 1})",
    )


def sleeping(project: Path) -> str:
    return pipeline(
        project,
        "sleeps",
        "from pathlib import Path\n(Path(run_dir) / 'started').write_text('yes')",
        "import time\ntime.sleep(300)",
        parameters="run_dir = ''",
    )


# --- the exit-code table ----------------------------------------------------------------------


def readme_exit_codes() -> dict[int, str]:
    """The README's exit-code table: code -> meaning."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text[text.index("| Exit code | Meaning |") :].split("\n\n")[0].splitlines()[2:]
    codes = {}
    for row in table:
        first, meaning = [cell.strip() for cell in row.strip("|").split("|", 1)]
        for code in re.findall(r"\d+", first):
            codes[int(code)] = meaning
    return codes


def ok(project: Path) -> subprocess.CompletedProcess:
    done = nbmill("run", quick(project), "--json", cwd=project)
    assert parsed(done)["status"] == "completed"
    return done


def error(project: Path) -> subprocess.CompletedProcess:
    done = nbmill("run", "pipelines/nope.yml", "--json", cwd=project)
    assert done.stdout == "" and done.stderr.startswith("error: pipelines/nope.yml")
    return done


def usage(project: Path) -> subprocess.CompletedProcess:
    done = nbmill("run", "--json", cwd=project)  # no pipeline
    assert done.stdout == "" and done.stderr.startswith("usage: nbmill run")
    return done


def drift(project: Path) -> subprocess.CompletedProcess:
    done = nbmill("run", drifting(project), "--fail-on-drift", "--json", cwd=project)
    assert parsed(done)["drift"] == ["watch"]
    return done


def different(project: Path) -> subprocess.CompletedProcess:
    assert nbmill("run", quick(project), cwd=project).returncode == 0
    changed = only_run(project / "runs") / "notebooks" / "quick.ipynb"
    changed.write_text(changed.read_text() + "\n")
    done = nbmill("verify", "--json", cwd=project)
    found = parsed(done)
    assert found["ok"] is False and str(changed) in found["problem"]
    return done


def stopped_by(signum: int):
    def interrupt(project: Path) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "nbmill", "run", sleeping(project), "--json"]
        runner = subprocess.Popen(
            command, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 120
        while not list((project / "runs").glob("*/started")):
            assert runner.poll() is None, runner.communicate()
            assert time.monotonic() < deadline, "the step did not start"
            time.sleep(0.1)
        runner.send_signal(signum)
        stdout, stderr = runner.communicate(timeout=120)
        done = subprocess.CompletedProcess(command, runner.returncode, stdout, stderr)
        assert parsed(done)["status"] == "interrupted"
        assert f"interrupted by {signal.Signals(signum).name}" in stderr
        return done

    return interrupt


EXIT_CASES = {
    errors.OK: ok,
    errors.ERROR: error,
    errors.USAGE: usage,
    errors.DRIFT: drift,
    errors.DIFFERENT: different,
    errors.INTERRUPTED_BY_SIGINT: stopped_by(signal.SIGINT),
    errors.INTERRUPTED_BY_SIGTERM: stopped_by(signal.SIGTERM),
}


def test_the_readme_s_exit_code_table_is_the_one_in_the_code():
    assert sorted(readme_exit_codes()) == sorted(EXIT_CASES) == [0, 1, 2, 3, 4, 130, 143]
    assert "usage" in readme_exit_codes()[errors.USAGE]
    assert "verify" in readme_exit_codes()[errors.DIFFERENT]


@pytest.mark.slow
@pytest.mark.parametrize("code", sorted(EXIT_CASES), ids=lambda code: f"exit-{code}")
def test_each_exit_code_of_the_table_on_a_real_command(project, code):
    done = EXIT_CASES[code](project)
    assert done.returncode == code, done.stdout + done.stderr
    empty_or_json(done)  # results on stdout, as JSON; errors and progress on stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_a_reproduction_whose_metric_differs_exits_4_and_the_library_says_the_same(project):
    spec = pipeline(
        project, "noisy", "import random\nfrom nbmill import tracking",
        "tracking.log_metrics({'noise': random.random()})",
    )  # fmt: skip
    assert nbmill("run", spec, cwd=project).returncode == 0
    done = nbmill("reproduce", "latest", "--json", cwd=project)
    assert done.returncode == errors.DIFFERENT, done.stderr
    assert parsed(done)["metrics_equal"] is False

    from nbmill.pipeline.reproduce import reproduce_run
    from nbmill.project.config import load_config

    again = reproduce_run("latest", load_config(project), warn=lambda problem: None)
    assert [row["name"] for row in again.metrics_differ] == ["noisy.noise"]
    assert again.run_dir.parent == project / "runs" / "reproductions"


# --- options and verbs --------------------------------------------------------------------------


@pytest.mark.slow
def test_force_takes_one_step_each_and_never_the_pipeline(project):
    spec = quick(project)
    first = nbmill("run", "--force", "quick", spec, "--json", cwd=project)
    assert first.returncode == 0, first.stderr
    explained = nbmill("run", spec, "--force", "quick", "--explain", "--json", cwd=project)
    assert [line["reason"] for line in parsed(explained)] == ["miss: --force"]
    everything = nbmill("run", spec, "--force-all", "--explain", "--json", cwd=project)
    assert [line["reason"] for line in parsed(everything)] == ["miss: --force"]
    bare = nbmill("run", spec, "--force", cwd=project)  # which step?
    assert bare.returncode == errors.USAGE and "--force: expected one argument" in bare.stderr


def test_the_older_spellings_still_parse_and_are_not_in_the_help(project):
    for old in (["--backend", "local"], ["--backend", "azureml", "--dry-run"]):
        done = nbmill("run", "pipelines/nope.yml", *old, cwd=project)
        assert done.returncode == errors.ERROR and "pipeline file not found" in done.stderr
    deploy = ("deploy", "nope", "--target", "azureml", "--endpoint", "e", "--dry-run")
    done = nbmill(*deploy, cwd=project)
    assert done.returncode == errors.ERROR and "'nope': not a registered model" in done.stderr
    shown = [name for name, _, _ in listed(help_page("run")) + listed(help_page("deploy"))]
    assert "--on {local,azureml}" in shown and "--on {azureml}" in shown
    assert not [name for name in shown if name.startswith(("--backend", "--target"))]


@pytest.mark.slow
def test_a_model_named_like_a_verb_is_a_name_after_the_verb(project):
    done = nbmill("models", "list", "history", cwd=project)
    assert done.returncode == errors.ERROR and "no registered model 'history'" in done.stderr
    assert done.stdout == ""


def test_a_noun_without_a_verb_lists(project):
    listed_events = nbmill("events", "--type", "nbmill.run.*", "--json", cwd=project)
    assert listed_events.returncode == 0 and parsed(listed_events) == []
    assert parsed(nbmill("events", "list", "--json", cwd=project)) == []
    unknown = nbmill("models", "diabetes-ridge", cwd=project)  # the verb is missing
    assert unknown.returncode == errors.USAGE and "invalid choice: 'diabetes-ridge'" in (
        unknown.stderr
    )


def test_a_dry_run_option_alone_or_out_without_it_is_refused(project):
    spec = quick(project)
    alone = nbmill("run", spec, "--dry-run", cwd=project)
    assert alone.returncode == errors.ERROR and "add --on azureml" in alone.stderr
    out = nbmill("run", spec, "--out", "x", cwd=project)
    assert out.returncode == errors.ERROR and "add --dry-run" in out.stderr
    assert alone.stdout == out.stdout == ""


@pytest.mark.skipif(configured(), reason="an Azure ML workspace is configured")
def test_a_run_on_azure_ml_without_a_workspace_says_what_to_set_and_leaves_no_folder(project):
    done = nbmill("run", quick(project), "--on", "azureml", "--json", cwd=project)
    assert done.returncode == errors.ERROR and done.stdout == ""
    assert done.stderr.startswith("error: no Azure ML workspace: set AZURE_SUBSCRIPTION_ID")
    assert not (project / "runs").exists()


@pytest.mark.skipif(not HAS_AZURE_SDK, reason="azure-ai-ml is not installed (make setup-azure)")
def test_a_dry_run_s_problems_go_to_stderr(tmp_path):
    pipeline = tmp_path / "zero.yml"  # a monitoring pipeline whose drift threshold the SDK drops
    pipeline.write_text(
        "name: monitoring\nparams:\n  model_name: diabetes-ridge\nsteps:\n  monitor:\n"
        f"    notebook: {ROOT / 'notebooks' / 'monitor.ipynb'}\n"
        "    outputs:\n      monitor_dir: monitor\n"
        "    params:\n      thresholds: {normalized_wasserstein_distance: 0.0}\n"
    )
    command = ["monitor-schedule", "diabetes-ridge@production", "--endpoint", "diabetes"]
    command += ["--pipeline", str(pipeline), "--training-data", "azureml:diabetes-training:1"]
    command += ["--dry-run", "--out", str(tmp_path / "out")]
    done = nbmill(*command, cwd=ROOT)
    assert done.returncode == errors.ERROR and done.stdout == ""
    assert f"error: {tmp_path / 'out' / 'schedule.yml'}: " in done.stderr
    assert "normalized_wasserstein_distance" in done.stderr
    as_json = nbmill(*command, "--json", cwd=ROOT)
    assert as_json.returncode == errors.ERROR and parsed(as_json)["valid"] is False


# --- every command, with --json, on a real project ------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The default training pipeline run once, into its own store and runs folder: a run, a
    registered, promoted and locally deployed model."""
    base = tmp_path_factory.mktemp("conventions")
    env = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{base}/mlflow.db",
        "NBMILL_RUNS_DIR": str(base / "runs"),
    }
    done = nbmill("run", "pipelines/training.yml", "--reason", "first", "--json", cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr
    return {"base": base, "env": env, "run": parsed(done)}


def production(trained) -> str:
    shown = nbmill(
        "models", "show", "diabetes-ridge@production", "--json", cwd=ROOT, env=trained["env"]
    )
    return parsed(shown)["version"]


@pytest.mark.slow
def test_every_command_that_prints_a_result_prints_json_with_json(trained, tmp_path):
    first = trained["run"]
    assert set(first) >= {"id", "status", "record", "metrics"} and first["status"] == "completed"
    package = Path(first["record"]) / "package"
    service = ServeProcess(package, cwd=ROOT)
    results = {}
    try:  # the service is stopped however the test ends
        service.wait_ready()
        azure = ["--on", "azureml", "--endpoint", "diabetes", "--dry-run"]
        model = "diabetes-ridge"
        archive = str(tmp_path / "archive")
        rows = tmp_path / "rows.csv"
        diabetes.load()[diabetes.FEATURES].head(300).to_csv(rows, index=False)
        cases: dict[tuple[str, ...], list] = {
            ("run",): ["run", "pipelines/training.yml", "--reason", "a second version"],
            ("reproduce",): ["reproduce", first["id"]],
            ("runs",): ["runs"],
            ("show",): ["show", first["id"]],
            ("diff",): ["diff", first["id"], "latest"],
            ("report",): ["report"],
            ("verify",): ["verify"],
            ("events", "list"): ["events", "list", "--type", "nbmill.model.*"],
            ("events", "retry"): ["events", "retry"],
            ("lineage",): ["lineage", f"{model}@production"],
            ("models", "list"): ["models", "list", model],
            ("models", "show"): ["models", "show", f"{model}@production"],
            ("models", "history"): ["models", "history", model],
            ("models", "promote"): lambda: [
                "models",
                "promote",
                model,
                other(),
                "--reason",
                "walk",
            ],
            ("models", "rollback"): ["models", "rollback", model, "--reason", "walk back"],
            ("promote",): lambda: ["promote", model, other(), "--reason", "alias"],
            ("rollback",): ["rollback", model, "--reason", "alias back"],
            ("traffic",): ["traffic", f"{model}@production", "--rows", "3", "--url", service.base],
            ("deploy",): ["deploy", f"{model}@production", *azure, "--out", str(tmp_path / "d")],
            ("monitor-schedule",): [
                "monitor-schedule",
                f"{model}@production",
                *azure,
                "--out",
                str(tmp_path / "m"),
                "--training-data",
                "azureml:diabetes-train:1",
            ],  # fmt: skip
            ("score",): [
                "score",
                f"{model}@production",
                "--input",
                str(rows),
                "--output",
                str(tmp_path / "scored.csv"),
                "--no-collect",
            ],  # fmt: skip
            ("archive", "push"): ["archive", "push", "--archive", archive],
            ("archive", "list"): ["archive", "list", "--archive", archive],
            ("archive", "pull"): ["archive", "pull", "--archive", archive],
            ("archive", "verify"): ["archive", "verify", "--archive", archive],
        }

        def other() -> str:
            return "1" if production(trained) == "2" else "2"

        paths = command_paths()
        assert sorted(set(paths) - NO_RESULT) == sorted(cases)  # a new command needs a case here
        env = {**trained["env"], "NBMILL_SERVE_KEY": service.key}
        for path, argv in cases.items():
            assert "--json" in [name for name, _, _ in listed(help_page(*path))], path
            if path in (("deploy",), ("monitor-schedule",)) and not HAS_AZURE_SDK:
                continue
            done = nbmill(*(argv() if callable(argv) else argv), "--json", cwd=ROOT, env=env)
            assert done.returncode == 0, f"{path}: {done.stderr[-2000:]}"
            assert "Traceback" not in done.stderr
            results[path] = parsed(done)
    finally:
        service.stop()
    second = results[("run",)]
    assert second["status"] == "completed" and second["metrics"]["train.model_version"] == 2
    assert results[("reproduce",)]["metrics_equal"] is True
    assert results[("verify",)]["ok"] is True
    assert results[("events", "retry")] == {"delivered": 0, "still_spooled": 0, "problems": []}
    assert {row["version"] for row in results[("models", "list")]} == {"1", "2"}
    assert results[("models", "promote")]["why"] == "walk"
    assert results[("rollback",)]["action"] == "rollback"
    assert results[("traffic",)]["rows"] == 3
    assert results[("archive", "list")] == [run["id"] for run in reversed(results[("runs",)])]
    assert results[("archive", "verify")]["ok"] is True
    assert results[("score",)]["rows"] == 300


@pytest.mark.slow
def test_models_history_reads_the_ledger_of_the_runs_folder_given(trained):
    runs = trained["env"]["NBMILL_RUNS_DIR"]
    env = {"MLFLOW_TRACKING_URI": trained["env"]["MLFLOW_TRACKING_URI"]}
    done = nbmill(
        "models", "history", "diabetes-ridge", "--runs-dir", runs, "--json", cwd=ROOT, env=env
    )
    moves = parsed(done)  # this test's ledger, not the project's own runs/ledger.jsonl
    assert any(move["why"] == "first" and move["version"] == "1" for move in moves), moves
