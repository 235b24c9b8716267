"""An executed notebook rendered as an HTML page for reviewers (nbconvert).

nbconvert's ``lab`` template inlines the same stylesheets (JupyterLab's, about 260 KB) and the
same diagram script into every page. Here those are written once beside the pages, as
``notebook.css`` and ``notebook.js``, and each page links to them with a relative path: a run's
``html/`` folder, copied anywhere, still renders, and each page still opens on its own. What is
shared is exactly what nbconvert inlines into a blank notebook's ``<head>``, in the same order,
so the pages look as they did; anything a notebook adds of its own stays in its page.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from nbmill._fs import write_atomic

TEMPLATE = "lab"
SHARED_CSS = "notebook.css"
SHARED_JS = "notebook.js"
CHARSET = '@charset "utf-8";\n'


@dataclass(frozen=True)
class SharedAssets:
    """What every page of the template carries in its ``<head>``: each element as nbconvert
    writes it, and the text of the two files that replace them."""

    styles: tuple[str, ...]
    scripts: tuple[str, ...]
    css: str
    js: str


def _exporter():
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name=TEMPLATE)


def _blank_notebook():
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    return new_notebook(
        cells=[new_markdown_cell("# x"), new_code_cell("x = 1")],
        metadata={"language_info": {"name": "python"}},
    )


@cache
def shared_assets() -> SharedAssets:
    """The template's own ``<style>`` elements and inline module scripts, found by rendering a
    blank notebook (about half a second, once per process)."""
    import rcssmin
    from bs4 import BeautifulSoup

    page, _ = _exporter().from_notebook_node(_blank_notebook())
    head = BeautifulSoup(page, features="html.parser").head
    styles = head.find_all("style")
    # The diagram script is an inline module; a module cannot be loaded from file:// (no
    # origin), so it is shared as a classic deferred script, which runs at the same moment.
    scripts = [s for s in head.find_all("script") if s.get("type") == "module" and not s.get("src")]
    return SharedAssets(
        styles=tuple(str(style) for style in styles),
        scripts=tuple(str(script) for script in scripts),
        # Minified (comments and spacing out, nothing else): 263 KB of JupyterLab's own CSS
        # becomes about 205 KB, in every run.
        css=CHARSET + rcssmin.cssmin("\n".join(style.string or "" for style in styles)),
        js="\n".join(script.string or "" for script in scripts),
    )


def share_assets(page: str, assets: SharedAssets) -> str:
    """``page`` with the shared elements of its ``<head>`` swapped for links: the styles for one
    link to ``notebook.css``, where the first of them was, and the scripts for ``notebook.js``."""
    if "</head>" not in page:
        return page
    head, tail = page.split("</head>", 1)
    for shared, element in (
        (assets.styles, f'<link rel="stylesheet" href="{SHARED_CSS}"/>'),
        (assets.scripts, f'<script defer src="{SHARED_JS}"></script>'),
    ):
        for inline in shared:
            if inline in head:
                head = head.replace(inline, element, 1)
                element = ""
    return f"{head}</head>{tail}"


def write_shared_assets(folder: Path, assets: SharedAssets) -> None:
    """``notebook.css`` and ``notebook.js`` in ``folder``, unless they are there already."""
    for name, text in ((SHARED_CSS, assets.css), (SHARED_JS, assets.js)):
        path = Path(folder) / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            write_atomic(path, text)


def render_html(notebook: Path, target: Path) -> None:
    """``target``: the executed ``notebook`` as a page, linking the shared files beside it."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    body, _ = _exporter().from_notebook_node(nb)
    assets = shared_assets()
    write_shared_assets(Path(target).parent, assets)
    write_atomic(target, share_assets(body, assets))


def preload() -> None:
    """Render a blank notebook, so that nbconvert compiles its templates and imports what it
    imports lazily before the first real page, and the shared files are known (about half a
    second)."""
    shared_assets()
