"""Read what a notebook declares: its ``parameters`` cell, parsed without running anything."""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from nbmill.errors import NotebookError

UNKNOWN = object()  # a default that is not a literal (e.g. a call): any value is accepted


@dataclass(frozen=True)
class Parameter:
    name: str
    default: Any  # the literal default, or UNKNOWN
    source: str  # the default as written

    @property
    def type_name(self) -> str:
        if self.default is UNKNOWN or self.default is None:
            return "any"
        return type(self.default).__name__


def read_notebook(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotebookError(f"{path}: notebook not found") from None
    except json.JSONDecodeError as exc:
        raise NotebookError(f"{path}: not a notebook (invalid JSON: {exc})") from None


def cell_source(cell: dict) -> str:
    """A cell's source as one string (nbformat allows a list of lines on disk)."""
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def code_cells(nb: dict) -> list[dict]:
    return [cell for cell in nb.get("cells", []) if cell.get("cell_type") == "code"]


def parameters_cell(nb: dict) -> dict | None:
    for cell in code_cells(nb):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            return cell
    return None


class NoParametersCell(dict):
    """What a notebook without a ``parameters`` cell declares: nothing. papermill runs such a
    notebook as it is, so nbmill does too, as long as nothing is to be injected into it."""

    def __init__(self, path: Path):
        super().__init__()
        self.message = (
            f"{path.name} has no cell tagged 'parameters' (in JupyterLab: select the cell, open "
            "the property inspector and add the tag 'parameters')"
        )


@lru_cache(maxsize=64)
def _declared(path: Path, mtime_ns: int) -> dict[str, Parameter]:
    nb = read_notebook(path)
    cell = parameters_cell(nb)
    if cell is None:
        return NoParametersCell(path)
    return parse_parameters(cell_source(cell), where=str(path))


def declared_parameters(path: Path) -> dict[str, Parameter]:
    """The names and literal defaults assigned in the notebook's ``parameters`` cell
    (a ``NoParametersCell``, empty, if it has none)."""
    path = Path(path).resolve()
    try:
        mtime = path.stat().st_mtime_ns
    except FileNotFoundError:
        raise NotebookError(f"{path}: notebook not found") from None
    return _declared(path, mtime)


def parse_parameters(source: str, where: str = "<parameters cell>") -> dict[str, Parameter]:
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise NotebookError(f"{where}: the parameters cell is not valid Python: {exc}") from None
    params: dict[str, Parameter] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        for target in targets:
            if isinstance(target, ast.Name):
                try:
                    default = ast.literal_eval(value)
                except ValueError:
                    default = UNKNOWN
                params[target.id] = Parameter(
                    target.id, default, ast.get_source_segment(source, value) or ""
                )
    return params
