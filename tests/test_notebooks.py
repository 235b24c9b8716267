"""The shipped notebooks stay thin, clean and parameterised."""

import json

import pytest

from nbmill.project.notebook import declared_parameters
from nbmill.project.spec import load_pipeline
from tests.conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_the_pipelines_use_every_notebook():
    used = {
        step.notebook
        for path in sorted((ROOT / "pipelines").glob("*.yml"))
        for step in load_pipeline(path).steps.values()
    }
    assert used == set(NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_one_parameters_cell_and_a_title(path):
    nb = json.loads(path.read_text())
    tagged = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1, path.name
    assert nb["cells"][0]["cell_type"] == "markdown" and nb["cells"][0]["source"][0].startswith("#")
    assert declared_parameters(path)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_thin_logic_lives_in_the_package(path):
    nb = json.loads(path.read_text())
    code = [line for c in nb["cells"] if c["cell_type"] == "code" for line in c["source"]]
    assert len(code) <= 30, f"{path.name} has {len(code)} lines of code; move logic to src/"
    assert not any(line.lstrip().startswith(("def ", "class ")) for line in code), path.name
