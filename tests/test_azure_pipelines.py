"""The Azure Pipelines files: valid definitions whose steps do what the README says.

azure-pipelines.yml (CI, Train, DeployStaging, DeployProd), .azure-pipelines/monitoring.yml (the
scheduled monitoring) and the templates they share (.azure-pipelines/templates/).

Validation follows ../shared/README.md: Azure Pipelines reads every scalar as a string, so the
YAML is loaded that way and "true"/"false" and numeric strings count as booleans and numbers; a
template is validated against its own definition (stepsTemplate, jobsTemplate, ...). The steps'
bash scripts are run as the agent runs them, with fakes of az, make and nbmill that record their
calls.
"""

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import jsonschema
import pytest
import yaml
from jsonschema.exceptions import relevance

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "azure-pipelines.yml"
MONITORING = ROOT / ".azure-pipelines" / "monitoring.yml"
TEMPLATES = ROOT / ".azure-pipelines" / "templates"
MAKEFILE = ROOT / "Makefile"
SCHEMA = json.loads((ROOT / "schemas" / "azure-pipelines.schema.json").read_text())

MAIN = "eq(variables['Build.SourceBranch'], 'refs/heads/main')"
# The variable group's values, as a step sees them (non-secret group variables are environment
# variables), and the predefined variables the files use, with the values the tests give them.
GROUP = {
    "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
    "AZURE_RESOURCE_GROUP": "rg-nbmill",
    "AZUREML_WORKSPACE_NAME": "ws-nbmill",
}
PREDEFINED = {
    "Build.SourceVersionMessage": 'Revert "smaller alpha"',
    "Build.BuildNumber": "20261203.4",
    "System.AccessToken": "job-token",
    "Build.Reason": "Schedule",
    "System.JobAttempt": "1",
}
WORKSPACE_URI = "azureml://westeurope.api.azureml.ms/mlflow/v1.0/subscriptions/sub/workspaces/ws"


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
# A template file holds one of these lists; the schema has a definition for each.
TEMPLATE_DEFINITIONS = {
    "stages": "stagesTemplate",
    "jobs": "jobsTemplate",
    "steps": "stepsTemplate",
    "variables": "variablesTemplate",
}


def load(path: Path) -> dict:
    with path.open() as f:
        return yaml.load(f, Loader=yaml.BaseLoader)


def definition_files() -> list[Path]:
    """Every Azure Pipelines YAML file in the repository."""
    return [PIPELINE, *sorted((ROOT / ".azure-pipelines").rglob("*.yml"))]


def definition_of(path: Path) -> str:
    """The schema definition a file is validated against: a whole pipeline, or its template kind."""
    if TEMPLATES not in path.parents:
        return "pipeline"
    (kind,) = set(load(path)) & set(TEMPLATE_DEFINITIONS)
    return TEMPLATE_DEFINITIONS[kind]


@cache
def validator(definition: str) -> jsonschema.Draft7Validator:
    """The root accepts a whole pipeline only: a template is checked against its definition."""
    if definition == "pipeline":
        return AzureValidator(SCHEMA)
    schema = copy.deepcopy(SCHEMA)
    del schema["oneOf"]
    schema["$ref"] = f"#/definitions/{definition}"
    return AzureValidator(schema)


def schema_error(document, definition: str = "pipeline") -> str | None:
    """The most relevant validation error with its nested reason, or None when valid.

    Under an anyOf or oneOf the reason comes from the alternative the document nearly is (a
    `script` step rather than one of the tasks, a pipeline of jobs rather than of stages).
    """
    error = max(validator(definition).iter_errors(document), key=relevance, default=None)
    if error is None:
        return None
    reasons = [f"{error.json_path}: {error.message[:200]}"]
    while error.context:
        nearest = min(
            _alternatives(error),
            key=lambda errors: sum(_distance(e, error.absolute_path) for e in errors),
        )
        error = max(nearest, key=relevance)
        reasons.append(f"{error.json_path}: {error.message[:200]}")
    return "\n  because ".join(reasons)


def _alternatives(error) -> list[list]:
    """The errors of an anyOf or oneOf, one list per alternative."""
    by_alternative: dict = {}
    for nested in error.context:
        by_alternative.setdefault(nested.relative_schema_path[0], []).append(nested)
    return list(by_alternative.values())


def _distance(error, instance_path) -> int:
    """How far the instance is from what failed: a missing required key or another type of the
    instance itself says it is another kind of thing (far); a mistake inside it is near."""
    if error.context:
        return min(
            sum(_distance(nested, error.absolute_path) for nested in errors)
            for errors in _alternatives(error)
        )
    itself = len(error.absolute_path) == len(instance_path)
    return 10 if itself and error.validator in ("required", "type") else 1


# Templates are expanded as Azure DevOps expands them at compile time, for the parts these files
# use: `${{ parameters.NAME }}` and `- template: FILE` in a stages, jobs, steps or variables list.
PARAMETER = re.compile(r"\$\{\{\s*parameters\.(\w+)\s*\}\}")
TEMPLATE_LISTS = tuple(TEMPLATE_DEFINITIONS)


def template_path(reference: str, including: Path) -> Path:
    """A template path is relative to the including file, or to the repository with a leading /."""
    assert "@" not in reference, f"{including}: {reference}: templates from other repositories"
    return ROOT / reference[1:] if reference.startswith("/") else including.parent / reference


def expand_parameters(path: Path, given: dict) -> dict:
    """The file with its parameters' values (given, else defaults) in place of its expressions."""
    document = load(path)
    declared = {p["name"]: p for p in document.pop("parameters", [])}
    unknown = set(given) - set(declared)
    assert not unknown, f"{path.name}: unexpected parameters {sorted(unknown)}"
    values = {}
    for name, parameter in declared.items():
        assert name in given or "default" in parameter, f"{path.name}: parameter {name} is required"
        value = given.get(name, parameter.get("default"))
        allowed = parameter.get("values")
        assert allowed is None or value in allowed, f"{path.name}: {name}={value!r}: not {allowed}"
        if parameter.get("type") == "boolean":
            value = str(value == "true")  # how Azure DevOps renders a boolean into text
        values[name] = value

    def substitute(node):
        if isinstance(node, dict):
            return {key: substitute(value) for key, value in node.items()}
        if isinstance(node, list):
            return [substitute(item) for item in node]
        return PARAMETER.sub(lambda m: values[m.group(1)], node)

    return substitute(document)


def inline_templates(node, including: Path):
    if isinstance(node, dict):
        return {
            key: _inline_list(value, key, including)
            if key in TEMPLATE_LISTS and isinstance(value, list)
            else inline_templates(value, including)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [inline_templates(item, including) for item in node]
    return node


def _inline_list(items: list, key: str, including: Path) -> list:
    inlined = []
    for item in items:
        if isinstance(item, dict) and "template" in item:
            path = template_path(item["template"], including)
            expanded = expand_parameters(path, item.get("parameters", {}))
            assert key in expanded, f"{path.name} is used in a {key} list but has no {key}"
            inlined.extend(_inline_list(expanded[key], key, path))
        else:
            inlined.append(inline_templates(item, including))
    return inlined


@cache
def _compiled(path: Path) -> str:
    return json.dumps(inline_templates(expand_parameters(path, {}), path))


def compiled(path: Path = PIPELINE) -> dict:
    """The pipeline as Azure DevOps runs it: parameters at their defaults, templates inlined."""
    return json.loads(_compiled(path))


def stage(pipeline: dict, name: str) -> dict:
    return next(s for s in pipeline["stages"] if s["stage"] == name)


def job_steps(job: dict) -> list[dict]:
    """A job's steps; a deployment job keeps them in its strategy."""
    return job["steps"] if "steps" in job else job["strategy"]["runOnce"]["deploy"]["steps"]


def steps(stage_: dict) -> list[dict]:
    return [step for job in stage_["jobs"] for step in job_steps(job)]


def task(steps_: list[dict], name: str) -> dict:
    return next(step for step in steps_ if step.get("task") == name)


def named(steps_: list[dict], display_name: str) -> dict:
    return next(step for step in steps_ if step.get("displayName", "").startswith(display_name))


def script_of(step: dict) -> str:
    return step["script"] if "script" in step else step["inputs"]["inlineScript"]


def all_steps() -> list[dict]:
    """Every step of every pipeline, with the templates inlined."""
    monitor = compiled(MONITORING)
    return [
        *(step for s in compiled()["stages"] for step in steps(s)),
        *(step for job in monitor["jobs"] for step in job_steps(job)),
    ]


def variables(pipeline: dict) -> dict[str, str]:
    """The variables a pipeline defines in YAML (the group's come from Azure DevOps)."""
    return {v["name"]: v["value"] for v in pipeline["variables"] if "name" in v}


def makefile_variables() -> set[str]:
    """Variables the Makefile takes from the environment (`NAME ?= default`)."""
    return set(re.findall(r"^(\w+) \?= ", MAKEFILE.read_text(), re.MULTILINE))


def walk(node):
    """Every mapping in a document."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


# --- the schema ---------------------------------------------------------------------------------


def test_the_repository_has_the_pipelines_and_templates_described_here():
    names = {path.relative_to(ROOT).as_posix() for path in definition_files()}

    assert names >= {
        "azure-pipelines.yml",
        ".azure-pipelines/monitoring.yml",
        ".azure-pipelines/smoke.yml",
        ".azure-pipelines/templates/variables.yml",
        ".azure-pipelines/templates/setup-steps.yml",
        ".azure-pipelines/templates/publish-record-steps.yml",
        ".azure-pipelines/templates/deploy-job.yml",
    }


@pytest.mark.parametrize("path", definition_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_file_validates_against_the_azure_pipelines_schema(path):
    error = schema_error(load(path), definition_of(path))
    assert error is None, error


def _unknown_stage_key(pipeline: dict) -> None:
    pipeline["stages"][0]["runsOn"] = "ubuntu-latest"


def _steps_as_a_string(pipeline: dict) -> None:
    pipeline["stages"][0]["jobs"][0]["steps"] = "make test"


def _schedule_without_a_cron(pipeline: dict) -> None:
    pipeline["schedules"][0]["crontab"] = pipeline["schedules"][0].pop("cron")


def _misspelt_step_key(template: dict) -> None:
    template["steps"][1]["displayname"] = template["steps"][1].pop("displayName")


def _deploy_steps_as_a_string(template: dict) -> None:
    template["jobs"][0]["strategy"]["runOnce"]["deploy"]["steps"] = "nbmill deploy"


def _variable_without_a_value_key(template: dict) -> None:
    template["variables"][0]["vaule"] = template["variables"][0].pop("value")


@pytest.mark.parametrize(
    ("path", "breakage", "reason"),
    [
        pytest.param(PIPELINE, _unknown_stage_key, "'runsOn' was unexpected", id="pipeline-key"),
        pytest.param(
            PIPELINE, _steps_as_a_string, "'make test' is not of type 'array'", id="pipeline-steps"
        ),
        pytest.param(
            MONITORING, _schedule_without_a_cron, "'crontab' was unexpected", id="scheduled"
        ),
        pytest.param(
            TEMPLATES / "setup-steps.yml",
            _misspelt_step_key,
            "'displayname' was unexpected",
            id="steps-template",
        ),
        pytest.param(
            TEMPLATES / "deploy-job.yml",
            _deploy_steps_as_a_string,
            "'nbmill deploy' is not of type 'array'",
            id="jobs-template",
        ),
        pytest.param(
            TEMPLATES / "variables.yml",
            _variable_without_a_value_key,
            "'vaule' was unexpected",
            id="variables-template",
        ),
    ],
)
def test_schema_rejects_a_broken_copy_of_each_kind_of_file(path, breakage, reason):
    broken = copy.deepcopy(load(path))
    breakage(broken)
    assert reason in (schema_error(broken, definition_of(path)) or "valid")


# --- templates and what no step may do ----------------------------------------------------------


def template_references() -> list[tuple[Path, str, dict]]:
    """(including file, list it is in, reference) for every `template:` in every file."""
    found = []
    for path in definition_files():
        for mapping in walk(load(path)):
            for key in TEMPLATE_LISTS:
                for item in mapping.get(key) if isinstance(mapping.get(key), list) else []:
                    if isinstance(item, dict) and "template" in item:
                        found.append((path, key, item))
    return found


def test_every_template_reference_names_an_existing_template_of_its_kind():
    references = template_references()

    assert len(references) >= 8
    for including, key, reference in references:
        path = template_path(reference["template"], including)
        assert path.is_file(), f"{including.name}: {reference['template']} does not exist"
        assert TEMPLATES in path.parents, f"{path}: templates live in .azure-pipelines/templates/"
        assert key in load(path), f"{including.name}: {path.name} is not a {key} template"


def test_every_template_reference_passes_only_parameters_the_template_declares():
    for including, _, reference in template_references():
        # Raises, naming the template, on an unknown or missing parameter or a value not allowed.
        expand_parameters(
            template_path(reference["template"], including), reference.get("parameters", {})
        )


def test_no_step_or_job_continues_on_error():
    for path in definition_files():
        for mapping in walk(load(path)):
            assert mapping.get("continueOnError", "false") == "false", f"{path.name}: {mapping}"


def test_no_script_swallows_a_failure():
    for step in all_steps():
        if "script" in step or "inlineScript" in step.get("inputs", {}):
            script = script_of(step)
            for escape in ("|| true", "--exit-zero", "set +e", "|| :"):
                assert escape not in script, f"{step['displayName']}: {escape}"


def test_every_azure_cli_script_stops_at_its_first_failure():
    # AzureCLI@2 runs its bash script without -e, unlike a `script` step.
    scripts = [s for s in all_steps() if s.get("task") == "AzureCLI@2"]

    assert len(scripts) >= 6
    for step in scripts:
        assert step["inputs"]["scriptType"] == "bash"
        assert step["inputs"]["scriptLocation"] == "inlineScript"
        assert script_of(step).startswith("set -euo pipefail\n"), step["displayName"]


def test_every_azure_cli_step_logs_in_through_the_service_connection_named_in_yaml():
    # Azure DevOps authorizes a task's service connection before it reads a variable group.
    for path in (PIPELINE, MONITORING):
        pipeline = compiled(path)
        assert {"group": "nbmill-azure"} in pipeline["variables"]
        assert variables(pipeline)["serviceConnection"]
    for step in all_steps():
        if step.get("task") == "AzureCLI@2":
            assert step["inputs"]["azureSubscription"] == "$(serviceConnection)"


def test_every_variable_a_step_uses_is_defined():
    macro = re.compile(r"\$\(([A-Za-z_][\w.]*)\)")
    for path in (PIPELINE, MONITORING):
        pipeline = compiled(path)
        jobs = [j for s in pipeline.get("stages", [pipeline]) for j in s["jobs"]]
        for job in jobs:
            known = {**variables(pipeline), **job_variables(job), **PREDEFINED}
            known.update(dict.fromkeys(output_variables(job)))
            job_name = job.get("job") or job["deployment"]
            for name in macro.findall(json.dumps(job_steps(job))):
                assert name in known, f"{path.name}: job {job_name}: $({name}) is not defined"


def output_variables(job: dict) -> list[str]:
    """``step.variable`` for each output variable a named step of the job sets."""
    setting = re.compile(r"##vso\[task\.setvariable variable=(\w+);isOutput=true\]")
    return [
        f"{step['name']}.{variable}"
        for step in job_steps(job)
        if "name" in step
        for variable in setting.findall(json.dumps(step))
    ]


def job_variables(job: dict) -> dict[str, str]:
    """A job's own variables (a list of name/value, or a mapping)."""
    given = job.get("variables") or {}
    return given if isinstance(given, dict) else {v["name"]: v["value"] for v in given}


# --- running a step's script as the agent does --------------------------------------------------

FAKE_TOOL = '''#!{python}
"""A fake of az, make or nbmill: records its call, answers as FAKE_ANSWERS says."""
import json, os, sys
from pathlib import Path

argv = [Path(sys.argv[0]).name, *sys.argv[1:]]
with open(os.environ["FAKE_CALLS"], "a") as f:
    f.write(json.dumps({{"argv": argv, "mlflow": os.environ.get("MLFLOW_TRACKING_URI"),
                        "archive": os.environ.get("NBMILL_ARCHIVE")}}) + "\\n")
answers = json.loads(os.environ["FAKE_ANSWERS"])
prefixes = [p for p in answers if argv[: len(p.split())] == p.split()]
out, code = answers[max(prefixes, key=len)] if prefixes else ("", 0)
sys.stdout.write(out)
sys.exit(code)
'''


class Agent:
    """A checkout of the project on an agent whose az, make and nbmill are fakes."""

    def __init__(self, project: Path):
        self.project = project
        shutil.copytree(ROOT / ".azure-pipelines", project / ".azure-pipelines")
        (project / "tmp").mkdir()
        fakes = ("bin/az", "bin/make", ".venv/bin/nbmill", ".venv/bin/python", ".venv/bin/pytest")
        for tool in (project / fake for fake in fakes):
            tool.parent.mkdir(parents=True, exist_ok=True)
            tool.write_text(FAKE_TOOL.format(python=sys.executable))
            tool.chmod(0o755)
        self.calls_file = project / "calls.jsonl"

    def run(
        self,
        step: dict,
        answers: dict | None = None,
        without: tuple = (),
        values: dict | None = None,
        group: dict | None = None,
    ):
        """Run the step's script with its env (macros expanded) and the variable group's values
        (``group``: more of them); ``values``: the job's own variables and earlier steps'
        output variables."""
        given = values or {}
        values = {**variables(compiled()), **variables(compiled(MONITORING)), **PREDEFINED}
        values.update(given)
        step_env = {
            key: re.sub(r"\$\(([\w.]+)\)", lambda m: values[m.group(1)], value)
            for key, value in step.get("env", {}).items()
        }
        env = {
            "PATH": f"{self.project / 'bin'}:{os.environ['PATH']}",
            "HOME": str(self.project),
            "AGENT_TEMPDIRECTORY": str(self.project / "tmp"),
            "FAKE_CALLS": str(self.calls_file),
            "FAKE_ANSWERS": json.dumps(
                {"az ml workspace show": [WORKSPACE_URI, 0], **(answers or {})}
            ),
            **{k: v for k, v in {**GROUP, **(group or {})}.items() if k not in without},
            **step_env,
        }
        # A `script` step runs under bash -e -o pipefail; AzureCLI@2 runs plain bash.
        shell = ["-e", "-o", "pipefail"] if "script" in step else []
        self.calls_file.write_text("")
        return subprocess.run(
            ["bash", "--noprofile", "--norc", *shell, "-c", script_of(step)],
            cwd=self.project,
            env=env,
            capture_output=True,
            text=True,
        )

    def calls(self, *command: str) -> list[dict]:
        """The calls of a fake whose argv starts with `command` (e.g. "az", "ml", "datastore")."""
        lines = self.calls_file.read_text().splitlines()
        return [c for c in map(json.loads, lines) if c["argv"][: len(command)] == list(command)]


@pytest.fixture
def agent(tmp_path) -> Agent:
    return Agent(tmp_path)


# --- CI and Train -------------------------------------------------------------------------------


def test_ci_stage_publishes_junit_results_of_make_test_even_when_tests_fail():
    ci_steps = steps(stage(compiled(), "CI"))
    scripts = [step["script"] for step in ci_steps if "script" in step]
    publish = task(ci_steps, "PublishTestResults@2")

    assert 'make test PYTEST_ARGS="--junitxml=test-results.xml"' in scripts
    assert publish["condition"] == "succeededOrFailed()"
    assert publish["inputs"]["testResultsFiles"] == "test-results.xml"


def test_train_stage_runs_after_ci_with_the_readme_run_command():
    pipeline = compiled()
    train = stage(pipeline, "Train")
    (run,) = [step for step in steps(train) if step.get("script") == "make run"]

    assert train["dependsOn"] == "CI"
    assert run["env"] == {"PARAMS": "$(paramsFile)", "REASON": "$(Build.SourceVersionMessage)"}
    assert set(run["env"]) <= makefile_variables()
    assert variables(pipeline)["paramsFile"] == "params/dev.yml"


def test_train_stage_trains_into_the_workspace_on_main_and_on_the_agent_elsewhere():
    train_steps = steps(stage(compiled(), "Train"))
    on_agent = next(step for step in train_steps if step.get("script") == "make run")
    into_workspace = named(train_steps, "Train into the Azure ML workspace")

    # Exactly one of them runs: a pull request never moves the workspace registry's aliases.
    assert on_agent["condition"] == f"and(succeeded(), {MAIN.replace('eq(', 'ne(', 1)})"
    assert into_workspace["condition"] == f"and(succeeded(), {MAIN})"
    assert into_workspace["env"]["TRAIN_BACKEND"] == "$(trainBackend)"
    assert variables(compiled())["trainBackend"] == "local"


def test_train_into_the_workspace_runs_make_run_against_the_workspace_registry(agent):
    step = named(steps(stage(compiled(), "Train")), "Train into the Azure ML workspace")

    result = agent.run(step)

    assert result.returncode == 0, result.stderr
    assert [c["argv"] for c in agent.calls("make")] == [["make", "run"]]
    assert agent.calls("make")[0]["mlflow"] == WORKSPACE_URI
    assert ["az", "configure", "--defaults", "group=rg-nbmill", "workspace=ws-nbmill"] in [
        c["argv"] for c in agent.calls("az")
    ]


def test_train_into_the_workspace_submits_an_azure_ml_job_for_the_azureml_backend(agent):
    step = named(steps(stage(compiled(), "Train")), "Train into the Azure ML workspace")
    step["env"]["TRAIN_BACKEND"] = "azureml"

    result = agent.run(step)

    assert result.returncode == 0, result.stderr
    assert agent.calls("make") == []
    (nbmill,) = agent.calls("nbmill")
    assert nbmill["argv"] == [
        "nbmill",
        "run",
        "pipelines/training.yml",
        "--params",
        "params/dev.yml",
        "--on",
        "azureml",
        "--reason",
        'Revert "smaller alpha"',
    ]
    assert nbmill["mlflow"] == WORKSPACE_URI


def test_train_into_the_workspace_fails_when_the_azure_ml_job_fails(agent):
    step = named(steps(stage(compiled(), "Train")), "Train into the Azure ML workspace")
    step["env"]["TRAIN_BACKEND"] = "azureml"

    result = agent.run(step, {"nbmill run": ["", 1]})

    assert result.returncode == 1


def test_train_into_the_workspace_rejects_an_unknown_backend(agent):
    step = named(steps(stage(compiled(), "Train")), "Train into the Azure ML workspace")
    step["env"]["TRAIN_BACKEND"] = "kubernetes"

    result = agent.run(step)

    assert result.returncode == 1
    assert "##vso[task.logissue type=error]trainBackend is 'kubernetes'" in result.stdout
    assert agent.calls("make") == agent.calls("nbmill") == []


def test_a_step_on_the_workspace_fails_naming_the_variable_group_when_a_value_is_missing(agent):
    step = named(steps(stage(compiled(), "Train")), "Train into the Azure ML workspace")

    result = agent.run(step, without=("AZURE_RESOURCE_GROUP",))

    assert result.returncode != 0
    assert "AZURE_RESOURCE_GROUP: is not set: add it to the variable group nbmill-azure" in (
        result.stderr
    )
    assert agent.calls("make") == []


def test_train_stage_tags_the_build_and_publishes_the_run_record_even_when_the_run_fails():
    train_steps = steps(stage(compiled(), "Train"))
    tag = named(train_steps, "Tag the build")
    publish = task(train_steps, "PublishPipelineArtifact@1")

    assert tag["script"] == 'echo "##vso[build.addbuildtag]model-trained"'
    assert "condition" not in tag  # only after a successful run
    assert publish["inputs"]["artifact"] == "run-record-$(System.JobAttempt)"
    assert publish["inputs"]["targetPath"] == "$(runRecord)"
    assert publish["condition"].startswith("and(succeededOrFailed(),")
    assert stage(compiled(), "Train")["jobs"][0]["variables"]["runRecord"] == ""


ARCHIVE = {"ARCHIVE_URL": "az://nbmill-archive/records",
           "AZURE_STORAGE_ACCOUNT_URL": "https://stnbmill.blob.core.windows.net"}  # fmt: skip


def test_the_build_pushes_its_records_and_events_to_the_archive_even_when_the_run_failed(agent):
    step = named(steps(stage(compiled(), "Train")), "Push the run records and events")
    assert step["condition"] == "and(succeededOrFailed(), ne(variables['ARCHIVE_URL'], ''))"
    assert step["inputs"]["azureSubscription"] == "$(serviceConnection)"  # its identity

    result = agent.run(step, group=ARCHIVE)
    assert result.returncode == 0, result.stderr
    (push,) = agent.calls("nbmill")
    assert push["argv"] == ["nbmill", "archive", "push"]
    assert push["archive"] == ARCHIVE["ARCHIVE_URL"]
    assert push["mlflow"] == WORKSPACE_URI  # anchors go to the workspace's MLflow runs


def test_training_on_the_workspace_archives_as_it_goes_when_the_group_names_an_archive(agent):
    step = named(steps(stage(compiled(), "Train")), "Train into the Azure ML workspace")
    missing = agent.run(step, group={"ARCHIVE_URL": ARCHIVE["ARCHIVE_URL"]})
    result = agent.run(step, group=ARCHIVE)
    assert missing.returncode != 0
    assert "AZURE_STORAGE_ACCOUNT_URL: is not set: add it to the variable group" in missing.stderr
    assert result.returncode == 0, result.stderr
    assert agent.calls("make")[0]["archive"] == ARCHIVE["ARCHIVE_URL"]
    plain = agent.run(named(steps(stage(compiled(), "Train")), "Train into the Azure ML"))
    assert plain.returncode == 0 and agent.calls("make")[0]["archive"] is None


def run_find_record_step(project: Path) -> subprocess.CompletedProcess:
    """Run the Train stage's "Find the run record" script as the agent would, in `project`."""
    step = named(steps(stage(compiled(), "Train")), "Find the run record")
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


# --- DeployStaging and DeployProd ---------------------------------------------------------------


def test_deploy_stages_run_only_for_main_after_the_train_stage_succeeded():
    pipeline = compiled()
    for name in ("DeployStaging", "DeployProd"):
        deploy = stage(pipeline, name)
        depends_on = deploy["dependsOn"]
        assert "Train" in ([depends_on] if isinstance(depends_on, str) else depends_on)
        assert deploy["condition"].startswith("and(succeeded('Train'), ")
        assert deploy["condition"].endswith(f", {MAIN})")


def test_prod_deploys_to_the_production_environment_after_staging():
    pipeline = compiled()
    (staging_job,) = stage(pipeline, "DeployStaging")["jobs"]
    prod = stage(pipeline, "DeployProd")
    (prod_job,) = prod["jobs"]
    stages = [s["stage"] for s in pipeline["stages"]]

    assert stages == ["CI", "Train", "DeployStaging", "DeployProd"]
    assert "DeployStaging" in prod["dependsOn"]
    assert "succeeded('DeployStaging')" in prod["condition"]
    # Deployment jobs, so the environments' approvals and checks gate them.
    assert (staging_job["deployment"], staging_job["environment"]) == ("Deploy", "staging")
    assert (prod_job["deployment"], prod_job["environment"]) == ("Deploy", "production")


def test_deploy_jobs_check_out_the_repository_their_scripts_read():
    for name in ("DeployStaging", "DeployProd"):
        first, second = steps(stage(compiled(), name))[:2]
        assert first == {"checkout": "self"}  # a deployment job does not check out by itself
        assert second == {"download": "none"}


STAGED = "$[ stageDependencies.DeployStaging.Deploy.outputs['Deploy.staged.version'] ]"


def deploy_job(stage_name: str) -> dict:
    (job,) = stage(compiled(), stage_name)["jobs"]
    return job


def test_production_deploys_the_version_the_staging_stage_resolved_and_tested():
    staging, prod = deploy_job("DeployStaging"), deploy_job("DeployProd")
    resolve = named(job_steps(staging), "Resolve the version")
    assert (staging["deployment"], resolve["name"]) == ("Deploy", "staged")  # Deploy.staged.*
    assert job_variables(staging)["testedVersion"] == ""
    assert job_variables(prod)["testedVersion"] == STAGED
    deploy_at = [s.get("displayName", "") for s in job_steps(prod)]
    assert deploy_at.index("Resolve the version of $(modelName) to deploy") < next(
        i for i, name in enumerate(deploy_at) if name.startswith("nbmill deploy")
    )


def test_staging_resolves_its_alias_once_and_hands_the_version_on(agent):
    resolve = named(job_steps(deploy_job("DeployStaging")), "Resolve the version")
    answer = {"nbmill models show": [json.dumps({"version": "7", "aliases": ["staging"]}), 0]}
    result = agent.run(resolve, answer, values={"testedVersion": ""})
    assert result.returncode == 0, result.stderr
    (show,) = agent.calls("nbmill")
    assert show["argv"][1:] == ["models", "show", "diabetes-ridge@staging", "--json"]
    assert "##vso[task.setvariable variable=version;isOutput=true]7" in result.stdout


def test_production_takes_the_tested_version_without_reading_its_alias(agent):
    resolve = named(job_steps(deploy_job("DeployProd")), "Resolve the version")
    result = agent.run(resolve, values={"testedVersion": "7"})
    assert result.returncode == 0, result.stderr
    assert agent.calls("nbmill") == []  # production's alias may still name the old version
    assert "##vso[task.setvariable variable=version;isOutput=true]7" in result.stdout


@pytest.mark.parametrize("tested", ["", "seven", "7; rm -rf /"])
def test_no_version_or_a_bad_one_stops_the_job(agent, tested):
    resolve = named(job_steps(deploy_job("DeployProd")), "Resolve the version")
    answer = {"nbmill models show": [json.dumps({"version": ""}), 0]}
    result = agent.run(resolve, answer, values={"testedVersion": tested})
    assert result.returncode == 1
    assert "##vso[task.logissue type=error]No version of diabetes-ridge" in result.stdout
    assert "setvariable" not in result.stdout


@pytest.mark.parametrize(
    ("stage_name", "endpoint"),
    [("DeployStaging", "diabetes-ridge-staging"), ("DeployProd", "diabetes-ridge-prod")],
)
def test_deploy_job_deploys_that_version_blue_green_through_nbmill(agent, stage_name, endpoint):
    deploy_steps = steps(stage(compiled(), stage_name))
    setup = next(step for step in deploy_steps if step.get("script", "").startswith("make "))
    deploy = named(deploy_steps, "nbmill deploy")

    result = agent.run(deploy, values={"staged.version": "7"})

    assert setup["script"] == "make setup-azure"
    assert result.returncode == 0, result.stderr
    (nbmill,) = agent.calls("nbmill")
    assert nbmill["argv"][1:] == [
        "deploy", "diabetes-ridge/7", "--on", "azureml", "--endpoint", endpoint
    ]  # fmt: skip
    assert nbmill["mlflow"] == WORKSPACE_URI


def test_production_moves_its_alias_to_the_tested_version_with_the_approvers(agent):
    promote = named(job_steps(deploy_job("DeployProd")), "nbmill models promote")
    assert promote["condition"] == "and(succeeded(), ne(variables['testedVersion'], ''))"
    prod_steps = [s.get("displayName", "") for s in job_steps(deploy_job("DeployProd"))]
    check = prod_steps.index("Check that the endpoint answers")
    assert prod_steps.index(promote["displayName"]) > check  # only once the endpoint answers
    answers = {"python -m nbmill.governance.approvals": ["Ann Lee <ann@example.com>: ok\n", 0]}
    result = agent.run(promote, answers, values={"staged.version": "7", "testedVersion": "7"})
    assert result.returncode == 0, result.stderr
    (lookup,) = agent.calls("python")
    assert lookup["argv"][1:] == ["-m", "nbmill.governance.approvals"]
    (moved,) = agent.calls("nbmill")
    assert moved["argv"][1:6] == ["models", "promote", "diabetes-ridge", "7", "--to"]
    assert moved["argv"][6] == "production"
    given = dict(zip(moved["argv"][7::2], moved["argv"][8::2], strict=True))
    assert given["--approved-by"] == "Ann Lee <ann@example.com>: ok"
    assert "20261203.4" in given["--reason"] and "version 7" in given["--reason"]


def test_production_is_not_promoted_when_its_approvers_cannot_be_read(agent):
    promote = named(job_steps(deploy_job("DeployProd")), "nbmill models promote")
    answers = {"python -m nbmill.governance.approvals": ["", 1]}
    result = agent.run(promote, answers, values={"staged.version": "7", "testedVersion": "7"})
    assert result.returncode == 1
    assert agent.calls("nbmill") == []


def test_every_azure_cli_step_that_may_run_long_keeps_its_session_active():
    """Workload identity federation tokens expire (microsoft/azure-pipelines-tasks#19989)."""
    for job in (deploy_job("DeployStaging"), deploy_job("DeployProd")):
        for step in job_steps(job):
            if step.get("task") == "AzureCLI@2" and "deploy" in step.get("displayName", ""):
                assert step["inputs"].get("keepAzSessionActive") == "true", step["displayName"]


def test_deploy_job_fails_when_nbmill_deploy_fails(agent):
    deploy = named(steps(stage(compiled(), "DeployStaging")), "nbmill deploy")

    result = agent.run(deploy, {"nbmill deploy": ["", 1]}, values={"staged.version": "7"})
    assert result.returncode == 1


@pytest.mark.parametrize(
    "body",
    [
        json.dumps("[208.17, 77.5]"),  # az prints the endpoint's answer as a JSON string
        json.dumps('{"predictions": [208.17, 77.5]}'),
        '{"predictions": [208.17, 77.5]}',
    ],
)
def test_endpoint_check_passes_on_one_prediction_per_row(agent, body):
    check = named(steps(stage(compiled(), "DeployStaging")), "Check that the endpoint answers")

    result = agent.run(check, {"az ml online-endpoint invoke": [body, 0]})

    assert result.returncode == 0, result.stdout + result.stderr
    (invoke,) = agent.calls("az", "ml", "online-endpoint", "invoke")
    assert invoke["argv"][4:] == [
        "--name",
        "diabetes-ridge-staging",
        "--request-file",
        ".azure-pipelines/sample-request.json",
    ]


@pytest.mark.parametrize(
    ("body", "exit_code"),
    [
        (json.dumps('{"error": "model not loaded"}'), 0),
        (json.dumps("[208.17]"), 0),
        ('{"predictions": ["208.17", "77.5"]}', 0),
        ("", 1),
    ],
)
def test_endpoint_check_fails_on_any_other_answer(agent, body, exit_code):
    check = named(steps(stage(compiled(), "DeployProd")), "Check that the endpoint answers")

    result = agent.run(check, {"az ml online-endpoint invoke": [body, exit_code]})

    assert result.returncode != 0
    if exit_code == 0:
        assert "##vso[task.logissue type=error]The endpoint did not answer 2 predictions" in (
            result.stdout
        )


def test_sample_request_has_the_model_features():
    from nbmill_example.diabetes import FEATURES

    request = json.loads((ROOT / ".azure-pipelines" / "sample-request.json").read_text())

    assert request["input_data"]["columns"] == FEATURES
    assert {len(row) for row in request["input_data"]["data"]} == {len(FEATURES)}


def test_only_production_schedules_monitoring_of_its_endpoint(agent):
    def schedule_step(stage_name):
        return named(steps(stage(compiled(), stage_name)), "nbmill monitor-schedule")

    def runs(step) -> bool:  # the template's parameter, rendered into the condition
        (value,) = re.findall(r"eq\('(\w+)', 'true'\)", step["condition"])
        return value.lower() == "true"

    assert not runs(schedule_step("DeployStaging"))
    assert runs(schedule_step("DeployProd"))
    assert agent.run(schedule_step("DeployProd"), values={"staged.version": "7"}).returncode == 0
    (nbmill,) = agent.calls("nbmill")
    assert nbmill["argv"] == [
        "nbmill", "monitor-schedule", "diabetes-ridge/7", "--on", "azureml",
        "--endpoint", "diabetes-ridge-prod", "--params", "params/prod.yml",
    ]  # fmt: skip


# --- the live smoke suite -----------------------------------------------------------------------

SMOKE = ROOT / ".azure-pipelines" / "smoke.yml"


def smoke_step() -> dict:
    (job,) = compiled(SMOKE)["jobs"]
    return named(job_steps(job), "pytest tests/test_azure_live.py")


def test_the_smoke_suite_runs_weekly_on_main_with_a_session_that_lasts():
    smoke = compiled(SMOKE)
    (schedule,) = smoke["schedules"]
    assert schedule["branches"]["include"] == ["main"] and smoke["trigger"] == "none"
    assert smoke_step()["inputs"]["keepAzSessionActive"] == "true"


@pytest.mark.parametrize(
    ("pytest_exit", "skipped", "passes"),
    [(0, 0, True), (0, 3, False), (1, 0, False)],
    ids=["all ran and passed", "checks skipped", "a check failed"],
)
def test_the_smoke_step_passes_only_when_every_live_check_ran_and_passed(
    agent, pytest_exit, skipped, passes
):
    results = f'<testsuite name="pytest" skipped="{skipped}" tests="4"></testsuite>'
    (agent.project / "smoke-results.xml").write_text(results)
    result = agent.run(smoke_step(), {"pytest": ["", pytest_exit]})
    assert (result.returncode == 0) is passes, result.stdout + result.stderr
    (run,) = agent.calls("pytest")
    assert run["argv"][1] == "tests/test_azure_live.py"
    assert ("Some live checks were skipped" in result.stdout) is (skipped > 0 and not pytest_exit)


# --- the scheduled monitoring pipeline ----------------------------------------------------------


def monitoring_steps() -> list[dict]:
    (job,) = compiled(MONITORING)["jobs"]
    return job_steps(job)


def test_monitoring_pipeline_runs_daily_on_main_and_never_on_a_push():
    pipeline = load(MONITORING)
    (schedule,) = pipeline["schedules"]

    assert pipeline["trigger"] == "none"
    assert pipeline["pr"] == "none"
    assert re.fullmatch(r"\d+ \d+ \* \* \*", schedule["cron"])  # every day, at a fixed UTC time
    assert schedule["branches"]["include"] == ["main"]
    assert schedule["always"] == "true"
    assert variables(compiled(MONITORING))["productionEndpoint"] == "diabetes-ridge-prod"


def test_monitoring_downloads_the_last_days_the_production_endpoint_collected(agent):
    download = named(monitoring_steps(), "Download the endpoint's collected data")
    datastore = "az ml datastore show --name workspaceblobstore --query"
    answers = {
        f"{datastore} account_name": ["stnbmill\n", 0],
        f"{datastore} container_name": ["blobs\n", 0],
    }

    result = agent.run(download, answers)

    assert result.returncode == 0, result.stderr
    today = datetime.now(UTC)
    batches = [c["argv"] for c in agent.calls("az", "storage", "blob", "download-batch")]
    patterns = [argv[argv.index("--pattern") + 1] for argv in batches]
    assert patterns == [
        f"modelDataCollector/diabetes-ridge-prod/*/model_*/{day:%Y/%m/%d}/*"
        for day in (today - timedelta(days=1), today)
    ]
    for argv in batches:
        assert argv[argv.index("--account-name") + 1] == "stnbmill"
        assert argv[argv.index("--source") + 1] == "blobs"
        assert argv[argv.index("--destination") + 1] == "collected"


def run_monitoring(agent: Agent, exit_code: int) -> subprocess.CompletedProcess:
    step = named(monitoring_steps(), "nbmill run pipelines/monitoring.yml --fail-on-drift")
    result = agent.run(step, {"nbmill run": ["", exit_code]})
    (nbmill,) = agent.calls("nbmill")
    assert nbmill["argv"] == [
        "nbmill",
        "run",
        "pipelines/monitoring.yml",
        "--fail-on-drift",
        "-p",
        "monitor.collect_dir=collected/modelDataCollector",
        "-p",
        "monitor.endpoint=diabetes-ridge-prod",
        "--reason",
        "Schedule monitoring of endpoint diabetes-ridge-prod",
    ]
    assert nbmill["mlflow"] == WORKSPACE_URI  # the production model's baseline is in the workspace
    return result


def test_monitoring_logs_an_issue_and_fails_when_drift_was_detected(agent):
    result = run_monitoring(agent, 3)

    assert result.returncode == 3
    assert "##vso[task.logissue type=error]Drift detected on endpoint diabetes-ridge-prod" in (
        result.stdout
    )


def test_monitoring_passes_without_an_issue_when_no_drift_was_detected(agent):
    result = run_monitoring(agent, 0)

    assert result.returncode == 0, result.stderr
    assert "##vso[task.logissue" not in result.stdout


def test_monitoring_fails_without_a_drift_issue_when_nbmill_fails_otherwise(agent):
    result = run_monitoring(agent, 1)

    assert result.returncode == 1
    assert "Drift detected" not in result.stdout


def test_monitoring_publishes_its_run_record_even_when_drift_fails_the_run():
    (job,) = compiled(MONITORING)["jobs"]
    publish = task(job_steps(job), "PublishPipelineArtifact@1")

    assert publish["inputs"]["artifact"] == "monitoring-record-$(System.JobAttempt)"
    assert publish["condition"].startswith("and(succeededOrFailed(),")
    assert named(job_steps(job), "Find the run record")["condition"] == "succeededOrFailed()"
    assert job["variables"]["runRecord"] == ""
