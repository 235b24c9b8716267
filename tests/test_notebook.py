"""Reading a notebook's parameters cell, without running it."""

import pytest

from nbmill.errors import NotebookError
from nbmill.project.notebook import (
    UNKNOWN,
    NoParametersCell,
    declared_parameters,
    parse_parameters,
)
from tests.conftest import ROOT, write_notebook


def test_literal_defaults_are_read_with_their_types():
    params = parse_parameters('alpha = 1.0\nseed: int = 42\nname = "x"  # comment\nflag = True')
    assert {n: p.default for n, p in params.items()} == {
        "alpha": 1.0,
        "seed": 42,
        "name": "x",
        "flag": True,
    }
    assert params["alpha"].type_name == "float"


def test_a_computed_default_accepts_any_value():
    params = parse_parameters("import os\nout = os.getcwd()")
    assert params["out"].default is UNKNOWN
    assert params["out"].type_name == "any"


def test_a_notebook_without_a_parameters_cell_declares_nothing_and_says_why(tmp_path):
    path = write_notebook(tmp_path / "n.ipynb", None, "x = 1")
    declared = declared_parameters(path)
    assert declared == {} and isinstance(declared, NoParametersCell)
    assert "n.ipynb has no cell tagged 'parameters'" in declared.message


def test_a_parameters_cell_with_a_syntax_error_is_named(tmp_path):
    path = write_notebook(tmp_path / "n.ipynb", "alpha = = 1")
    with pytest.raises(NotebookError, match="n.ipynb: the parameters cell is not valid Python"):
        declared_parameters(path)


def test_same_names_as_papermill_inspection():
    import papermill

    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        ours = set(declared_parameters(notebook))
        theirs = set(papermill.inspect_notebook(str(notebook)))
        assert ours == theirs, notebook.name
