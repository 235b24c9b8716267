"""The pipeline file becomes typed steps, or an error naming the file, the step and the field."""

from pathlib import Path

import pytest
import yaml

from nbmill.errors import SpecError
from nbmill.project.spec import load_pipeline, topological_order
from tests.conftest import ROOT, write_notebook


def make(project: Path, spec: dict) -> Path:
    steps = spec.get("steps")
    for step in steps.values() if isinstance(steps, dict) else []:
        if isinstance(step, dict) and isinstance(step.get("notebook"), str):
            nb = project / step["notebook"]
            if not nb.exists() and "missing" not in nb.name:
                write_notebook(nb, "x = 1")
    path = project / "pipelines" / "p.yml"
    path.write_text(yaml.safe_dump(spec))
    return path


def error(project: Path, spec: dict) -> str:
    with pytest.raises(SpecError) as caught:
        load_pipeline(make(project, spec), project)
    return str(caught.value)


def test_the_default_pipeline_loads_in_dependency_order():
    pipeline = load_pipeline(ROOT / "pipelines" / "training.yml")
    assert pipeline.order == ["prep", "train", "evaluate", "deploy"]
    assert pipeline.steps["train"].needs == ("prep",)
    assert pipeline.steps["train"].inputs.params == {"train_data": "data/train.csv"}
    assert pipeline.steps["prep"].notebook == ROOT / "notebooks" / "prep.ipynb"


def test_steps_declared_out_of_order_run_after_what_they_need(project):
    spec = {
        "name": "p",
        "steps": {
            "b": {"notebook": "notebooks/b.ipynb", "needs": ["a"]},
            "a": {"notebook": "notebooks/a.ipynb"},
        },
    }
    assert load_pipeline(make(project, spec), project).order == ["a", "b"]


def test_unknown_step_field_names_file_step_and_field(project):
    message = error(
        project, {"name": "p", "steps": {"a": {"notebook": "notebooks/a.ipynb", "needz": []}}}
    )
    assert "p.yml: step 'a': unknown field 'needz'" in message
    assert "needs" in message  # says what is allowed


def test_missing_notebook_is_named(project):
    message = error(project, {"name": "p", "steps": {"a": {"notebook": "notebooks/missing.ipynb"}}})
    assert "step 'a': notebook 'notebooks/missing.ipynb' not found" in message


def test_needs_must_name_a_step(project):
    message = error(
        project, {"name": "p", "steps": {"a": {"notebook": "notebooks/a.ipynb", "needs": ["prep"]}}}
    )
    assert "step 'a': 'needs' names unknown step 'prep'" in message


def test_a_cycle_is_rejected_with_the_steps_in_it(project):
    message = error(
        project,
        {
            "name": "p",
            "steps": {
                "a": {"notebook": "notebooks/a.ipynb", "needs": ["b"]},
                "b": {"notebook": "notebooks/b.ipynb", "needs": ["a"]},
            },
        },
    )
    assert "p.yml" in message and "cycle" in message and "a -> b" in message


def test_an_input_must_come_from_a_step_it_needs(project):
    message = error(
        project,
        {
            "name": "p",
            "steps": {
                "a": {"notebook": "notebooks/a.ipynb", "outputs": {"out": "data/x.csv"}},
                "b": {"notebook": "notebooks/b.ipynb", "inputs": {"x": "data/x.csv"}},
            },
        },
    )
    assert (
        "step 'b': input 'x' (data/x.csv) is made by step 'a', which is not in its 'needs'"
        in message
    )


def test_an_input_nobody_makes_is_rejected(project):
    message = error(
        project,
        {
            "name": "p",
            "steps": {
                "a": {"notebook": "notebooks/a.ipynb", "inputs": {"x": "data/x.csv"}},
            },
        },
    )
    assert "input 'x' (data/x.csv) is not an output of any step" in message


def test_two_steps_cannot_write_the_same_output(project):
    message = error(
        project,
        {
            "name": "p",
            "steps": {
                "a": {"notebook": "notebooks/a.ipynb", "outputs": {"out": "model"}},
                "b": {
                    "notebook": "notebooks/b.ipynb",
                    "needs": ["a"],
                    "outputs": {"out": "model/"},
                },
            },
        },
    )
    assert "output 'model' is also written by step 'a' (its output 'model')" in message


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside.csv", "data/../../x"])
def test_outputs_stay_inside_the_run_folder(project, path):
    message = error(
        project,
        {
            "name": "p",
            "steps": {
                "a": {"notebook": "notebooks/a.ipynb", "outputs": {"out": path}},
            },
        },
    )
    assert "must be a relative path inside the run folder" in message


def test_steps_must_be_a_mapping(project):
    assert "'steps' must be a mapping" in error(project, {"name": "p", "steps": ["a"]})


def test_invalid_yaml_names_the_file(project):
    path = project / "pipelines" / "bad.yml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="bad.yml: not valid YAML"):
        load_pipeline(path, project)


def test_topological_order_keeps_declaration_order_among_peers():
    assert topological_order({"c": (), "a": (), "b": ("c",)}) == ["c", "a", "b"]
