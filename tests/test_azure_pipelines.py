"""azure-pipelines.yml: a valid Azure Pipelines definition that tests, trains and keeps the record.

Validation follows ../shared/README.md: Azure Pipelines reads every scalar as a string, so the
YAML is loaded that way and "true"/"false" and numeric strings count as booleans and numbers.
"""

import copy
import json
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from jsonschema.exceptions import best_match

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "azure-pipelines.yml"
MAKEFILE = ROOT / "Makefile"
SCHEMA = json.loads((ROOT / "schemas" / "azure-pipelines.schema.json").read_text())


def _is_boolean(checker, instance) -> bool:
    return isinstance(instance, bool) or instance in ("true", "false")


def _is_number(checker, instance) -> bool:
    return bool(re.fullmatch(r"-?\d+(\.\d+)?", str(instance)))


def _is_integer(checker, instance) -> bool:
    return bool(re.fullmatch(r"-?\d+", str(instance)))


AzureValidator = jsonschema.validators.extend(
    jsonschema.Draft7Validator,
    type_checker=jsonschema.Draft7Validator.TYPE_CHECKER.redefine_many(
        {"boolean": _is_boolean, "number": _is_number, "integer": _is_integer}
    ),
)
VALIDATOR = AzureValidator(SCHEMA)


def load_pipeline() -> dict:
    with PIPELINE.open() as f:
        return yaml.load(f, Loader=yaml.BaseLoader)


def schema_error(document) -> str | None:
    """The most relevant validation error with its nested reason, or None when valid."""
    error = best_match(VALIDATOR.iter_errors(document))
    if error is None:
        return None
    reasons = [f"{error.json_path}: {error.message[:200]}"]
    while error.context:
        error = best_match(error.context)
        reasons.append(f"{error.json_path}: {error.message[:200]}")
    return "\n  because ".join(reasons)


def stage(pipeline: dict, name: str) -> dict:
    return next(s for s in pipeline["stages"] if s["stage"] == name)


def steps(stage_: dict) -> list[dict]:
    return [step for job in stage_["jobs"] for step in job["steps"]]


def task(steps_: list[dict], name: str) -> dict:
    return next(step for step in steps_ if step.get("task") == name)


def makefile_variables() -> set[str]:
    """Variables the Makefile takes from the environment (`NAME ?= default`)."""
    return set(re.findall(r"^(\w+) \?= ", MAKEFILE.read_text(), re.MULTILINE))


def test_pipeline_validates_against_the_azure_pipelines_schema():
    error = schema_error(load_pipeline())
    assert error is None, error


def _unknown_stage_key(pipeline: dict) -> None:
    pipeline["stages"][0]["runsOn"] = "ubuntu-latest"


def _steps_as_a_string(pipeline: dict) -> None:
    pipeline["stages"][1]["jobs"][0]["steps"] = "make run"


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [
        (_unknown_stage_key, "'runsOn' was unexpected"),
        (_steps_as_a_string, "'make run' is not of type 'array'"),
    ],
)
def test_schema_rejects_a_broken_copy_of_the_pipeline(breakage, reason):
    broken = copy.deepcopy(load_pipeline())
    breakage(broken)
    assert reason in (schema_error(broken) or "valid")


def test_ci_stage_publishes_junit_results_of_make_test_even_when_tests_fail():
    ci_steps = steps(stage(load_pipeline(), "CI"))
    scripts = [step["script"] for step in ci_steps if "script" in step]
    publish = task(ci_steps, "PublishTestResults@2")

    assert 'make test PYTEST_ARGS="--junitxml=test-results.xml"' in scripts
    assert publish["condition"] == "succeededOrFailed()"
    assert publish["inputs"]["testResultsFiles"] == "test-results.xml"


def test_train_stage_runs_after_ci_with_the_readme_run_command():
    pipeline = load_pipeline()
    train = stage(pipeline, "Train")
    (run,) = [step for step in steps(train) if step.get("script") == "make run"]

    assert train["dependsOn"] == "CI"
    assert run["env"] == {"PARAMS": "$(paramsFile)", "REASON": "$(Build.SourceVersionMessage)"}
    assert set(run["env"]) <= makefile_variables()
    assert pipeline["variables"]["paramsFile"] == "params/dev.yml"


def test_train_stage_publishes_the_run_record_even_when_the_run_fails():
    publish = task(steps(stage(load_pipeline(), "Train")), "PublishPipelineArtifact@1")

    assert publish["inputs"]["artifact"] == "run-record-$(System.JobAttempt)"
    assert publish["inputs"]["targetPath"] == "$(runRecord)"
    assert publish["condition"].startswith("and(succeededOrFailed(),")


def run_find_record_step(project: Path) -> subprocess.CompletedProcess:
    """Run the Train stage's "Find the run record" script as the agent would, in `project`."""
    train_steps = steps(stage(load_pipeline(), "Train"))
    step = next(s for s in train_steps if s.get("displayName") == "Find the run record")
    assert step["condition"] == "succeededOrFailed()"
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-e", "-o", "pipefail", "-c", step["script"]],
        cwd=project,
        capture_output=True,
        text=True,
    )


def test_find_record_step_picks_the_newest_run_folder(tmp_path):
    for name in ["20261129T015842968Z-9e0fd6", "20261130T080000000Z-0a1b2c", "scratch"]:
        (tmp_path / "runs" / name).mkdir(parents=True)

    result = run_find_record_step(tmp_path)

    assert result.returncode == 0, result.stderr
    newest = tmp_path / "runs" / "20261130T080000000Z-0a1b2c"
    assert f"##vso[task.setvariable variable=runRecord]{newest}" in result.stdout


def test_find_record_step_fails_when_no_run_folder_exists(tmp_path):
    result = run_find_record_step(tmp_path)

    assert result.returncode != 0
    assert "##vso[task.logissue type=error]No run folder under runs/" in result.stdout
