"""An executed notebook rendered as a standalone HTML page for reviewers (nbconvert)."""

from __future__ import annotations

from pathlib import Path

from nbmill._fs import write_atomic

TEMPLATE = "lab"


def render_html(notebook: Path, target: Path) -> None:
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(notebook, as_version=4)
    body, _ = HTMLExporter(template_name=TEMPLATE).from_notebook_node(nb)
    write_atomic(target, body)


def preload() -> None:
    """Render a one-cell notebook, so that nbconvert compiles its templates and imports what it
    imports lazily before the first real page (about half a second)."""
    from nbconvert import HTMLExporter
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    sample = new_notebook(
        cells=[new_markdown_cell("# x"), new_code_cell("x = 1")],
        metadata={"language_info": {"name": "python"}},
    )
    HTMLExporter(template_name=TEMPLATE).from_notebook_node(sample)
