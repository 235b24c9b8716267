"""Fixtures that build real things: notebooks, pipelines and projects in temporary folders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]


def write_notebook(path: Path, parameters: str | None, *cells: str) -> Path:
    """A notebook with a `parameters` cell (unless None) followed by code cells."""
    nb = new_notebook(
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        }
    )
    nb.cells.append(new_markdown_cell(f"# {path.stem}"))
    if parameters is not None:
        cell = new_code_cell(parameters)
        cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    nb.cells.extend(new_code_cell(source) for source in cells)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def nbmill(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The real command line, in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "nbmill", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def load_run(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An empty project folder (pipelines/ marks it as the project root)."""
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "notebooks").mkdir()
    return tmp_path
