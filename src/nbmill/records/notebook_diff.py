"""Two runs' executed notebooks compared step by step with nbdime: what changed in the cells'
sources and outputs, as nbdime's diff, its text, and a standalone HTML page.

What is compared is what a reviewer reads: sources, outputs and attachments (nbdime's
``nbdiff -s -o -a``). Metadata (papermill's timings, kernel versions), cell ids and execution
counts change on every run and are left out. Each run folder's path, which papermill writes into
the injected parameters, is written as ``<run>`` on both sides, so that two runs' folder names
are no difference.

nbdime draws HTML only in its web app (``nbdiff-web``: a server and a JavaScript bundle that
fetches the diff from it), so the page here is nbdime's own text rendering, marked up line by
line: the text and the page always say the same thing.
"""

from __future__ import annotations

import html
import io
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import nbformat
from nbdime import diff_notebooks
from nbdime.prettyprint import PrettyPrintConfig, pretty_print_diff

from nbmill._fs import write_atomic
from nbmill.errors import NbmillError
from nbmill.records.runjson import notebook_path, read

RUN_PLACEHOLDER = "<run>"
COMPARED = "sources and outputs"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_LINE_CLASSES = (("## ", "info"), ("@@", "hunk"), ("+", "add"), ("-", "del"))


@dataclass(frozen=True)
class NotebookDiff:
    """One step's executed notebooks, a and b, compared."""

    a: str  # labels: the notebook's path from the runs folder
    b: str
    diff: list[dict[str, Any]] = field(repr=False)  # nbdime's diff of what is compared
    text: str  # nbdime's pretty-printed diff; "" when nothing changed
    html: str = field(repr=False)  # a standalone page of the same diff

    @property
    def changed(self) -> bool:
        return bool(self.diff)

    def as_dict(self) -> dict[str, Any]:
        """For ``--json``: everything but the page."""
        kept = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "html"}
        return {"changed": self.changed, **kept}


def diff_notebook_files(
    a: Path,
    b: Path,
    *,
    run_a: Path | None = None,
    run_b: Path | None = None,
    label_a: str | None = None,
    label_b: str | None = None,
    title: str = "notebook",
) -> NotebookDiff:
    """Compare notebook ``a`` with ``b``; ``run_a``/``run_b`` are the run folders whose paths
    they mention (written as ``<run>``)."""
    nb_a = reviewed(read_notebook(a), run_a)
    nb_b = reviewed(read_notebook(b), run_b)
    entries = diff_notebooks(nb_a, nb_b)
    label_a, label_b = label_a or str(a), label_b or str(b)
    text = diff_text(nb_a, entries)
    return NotebookDiff(
        label_a,
        label_b,
        json.loads(json.dumps(entries)),  # nbdime's entries as plain data, for --json
        text,
        diff_html(title, label_a, label_b, text),
    )


def notebook_diffs(run_a_dir: Path, run_b_dir: Path) -> dict[str, NotebookDiff]:
    """Every step that both runs have an executed notebook for (a cached step's is the run's it
    came from), in run a's order, compared."""
    run_a, run_b = read(run_a_dir), read(run_b_dir)
    diffs = {}
    for step in run_a["steps"]:
        if step not in run_b["steps"]:
            continue
        found_a = executed_notebook(Path(run_a_dir), run_a, step)
        found_b = executed_notebook(Path(run_b_dir), run_b, step)
        if found_a is None or found_b is None:
            continue
        (path_a, folder_a), (path_b, folder_b) = found_a, found_b
        diffs[step] = diff_notebook_files(
            path_a,
            path_b,
            run_a=folder_a,
            run_b=folder_b,
            label_a=_label(path_a, folder_a),
            label_b=_label(path_b, folder_b),
            title=f"step {step}",
        )
    return diffs


def executed_notebook(run_dir: Path, run: dict[str, Any], step: str) -> tuple[Path, Path] | None:
    """The step's executed notebook and the run folder it lies in, or None if it has none."""
    own = notebook_path(run_dir, step)
    if own.is_file():
        return own, run_dir
    cached = ((run["steps"].get(step) or {}).get("cached_from") or {}).get("notebook")
    if cached:  # relative to the runs folder: <run-id>/notebooks/<step>.ipynb
        path = run_dir.parent / cached
        if path.is_file():
            return path, run_dir.parent / Path(cached).parts[0]
    return None


def format_notebook_diffs(diffs: Mapping[str, NotebookDiff], steps: Iterable[str]) -> str:
    """The terminal text: each of ``steps`` (those both runs have), its diff or why none."""
    lines = [f"notebooks ({COMPARED}, nbdime)"]
    for step in steps:
        found = diffs.get(step)
        if found is None:
            lines.append(f"  {step}: not compared (no executed notebook in one of the runs)")
        elif not found.changed:
            lines.append(f"  {step}: no difference")
        else:
            lines.append(f"  {step}: {found.a} -> {found.b}")
            lines += [f"    {line}".rstrip() for line in found.text.rstrip("\n").splitlines()]
    return "\n".join(lines)


def write_html(diffs: Mapping[str, NotebookDiff], folder: Path) -> list[Path]:
    """``<folder>/<step>.html`` for each step compared; the paths written."""
    written = []
    for step, found in diffs.items():
        path = Path(folder) / f"{step}.html"
        write_atomic(path, found.html)
        written.append(path)
    return written


# -- the parts --------------------------------------------------------------------------------


def read_notebook(path: Path) -> nbformat.NotebookNode:
    try:
        return nbformat.read(str(path), as_version=4)
    except FileNotFoundError:
        raise NbmillError(f"{path}: no such notebook") from None
    except Exception as exc:  # nbformat raises several kinds for a file that is not a notebook
        raise NbmillError(f"{path}: not a notebook that can be compared ({exc})") from None


def reviewed(nb: dict[str, Any], run_dir: Path | None = None) -> nbformat.NotebookNode:
    """A copy of ``nb`` with only what is compared: no metadata, cell ids or execution counts,
    and ``run_dir`` written as ``<run>``."""
    replace = str(Path(run_dir).resolve()) if run_dir is not None else None
    cells = []
    for cell in nb.get("cells", []):
        kept = {k: v for k, v in cell.items() if k not in ("id", "metadata", "execution_count")}
        kept["metadata"] = {}
        if "outputs" in kept:
            kept["outputs"] = [
                {k: v for k, v in output.items() if k not in ("metadata", "execution_count")}
                for output in kept["outputs"]
            ]
        cells.append(_replaced(kept, replace))
    return nbformat.from_dict(
        {
            "nbformat": nb.get("nbformat", 4),
            "nbformat_minor": nb.get("nbformat_minor", 5),
            "metadata": {},
            "cells": cells,
        }
    )


def diff_text(nb_a: nbformat.NotebookNode, entries: list) -> str:
    """nbdime's pretty-printed diff (of its ``diff_notebooks`` entries), without colour and
    without calling git or diff."""
    if not entries:
        return ""
    out = io.StringIO()
    config = PrettyPrintConfig(out=out, use_git=False, use_diff=False, use_color=False)
    pretty_print_diff(nb_a, entries, "", config)
    return out.getvalue()


def diff_html(title: str, label_a: str, label_b: str, text: str) -> str:
    """A standalone page (no scripts, nothing fetched) of ``text``, each line marked as added,
    removed, a hunk or a header."""
    if text:
        marked = "\n".join(_line(line) for line in _ANSI.sub("", text).rstrip("\n").split("\n"))
        body = f'<pre class="diff">{marked}</pre>'
    else:
        body = '<p class="same">no difference</p>'
    return _PAGE.format(
        title=html.escape(title),
        a=html.escape(label_a),
        b=html.escape(label_b),
        compared=html.escape(COMPARED),
        run=html.escape(RUN_PLACEHOLDER),
        body=body,
    )


def _line(line: str) -> str:
    kind = next((name for prefix, name in _LINE_CLASSES if line.startswith(prefix)), "keep")
    return f'<span class="{kind}">{html.escape(line)}</span>'


def _replaced(value: Any, old: str | None) -> Any:
    if old is None:
        return value
    if isinstance(value, str):
        return value.replace(old, RUN_PLACEHOLDER)
    if isinstance(value, list):
        return [_replaced(item, old) for item in value]
    if isinstance(value, dict):
        return {key: _replaced(item, old) for key, item in value.items()}
    return value


def _label(path: Path, run_dir: Path) -> str:
    return f"{run_dir.name}/{path.relative_to(run_dir).as_posix()}"


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}: notebooks compared</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #1f2328; }}
pre.diff {{ font: 13px/1.45 ui-monospace, monospace; background: #f6f8fa; padding: 1rem;
  overflow-x: auto; }}
pre.diff span {{ display: block; white-space: pre; }}
.add {{ background: #e6ffec; color: #116329; }}
.del {{ background: #ffebe9; color: #82071e; }}
.info {{ color: #0550ae; font-weight: 600; margin-top: .6em; }}
.hunk {{ color: #6e7781; }}
.note, .same {{ color: #57606a; }}
</style>
</head>
<body>
<h1>{title}: notebooks compared</h1>
<p>a: <code>{a}</code><br>b: <code>{b}</code></p>
<p class="note">Compared: {compared} (nbdime). Metadata, cell ids and execution counts are left
out; each run's folder is written as <code>{run}</code>.</p>
{body}
</body>
</html>
"""
