"""Comparing two runs' executed notebooks with nbdime: sources and outputs, as text and HTML,
on notebooks written here and through `nbmill diff --notebooks` on two real runs."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
import yaml
from nbformat.v4 import new_output

from nbmill.errors import NbmillError
from nbmill.records.notebook_diff import (
    RUN_PLACEHOLDER,
    diff_notebook_files,
    format_notebook_diffs,
)
from tests.conftest import nbmill, write_notebook

XSS = "<script>document.body.dataset.pwned='yes'</script>"


def executed(path: Path, run_dir: Path, alpha: float, score: str, moment: str) -> Path:
    """A notebook as papermill leaves it: the injected parameters (naming the run folder),
    outputs, execution counts, timings in the metadata, and fresh cell ids."""
    write_notebook(
        path,
        'alpha = 1.0\nout = "scores.csv"',
        f'# Parameters\nalpha = {alpha}\nout = "{run_dir}/scores.csv"\n',
        "print(score)",
        "note",
    )
    nb = nbformat.read(path, as_version=4)
    nb.metadata["papermill"] = {"start_time": moment, "output_path": str(path)}
    for number, cell in enumerate(nb.cells):
        cell.id = f"cell-{number}-{moment[11:13]}"
        cell.metadata["papermill"] = {"start_time": moment, "duration": 0.01}
        if cell.cell_type == "code":
            cell.execution_count = number + (10 if "12:00" in moment else 0)
    nb.cells[3].outputs = [new_output("stream", name="stdout", text=f"score {score}\n")]
    nb.cells[4].outputs = [
        new_output("execute_result", {"text/plain": f"'{XSS}'"}, execution_count=9)
    ]
    nbformat.write(nb, path)
    return path


@pytest.fixture
def two_runs(tmp_path):
    run_a, run_b = tmp_path / "runs" / "A", tmp_path / "runs" / "B"
    a = executed(run_a / "notebooks" / "train.ipynb", run_a, 1.0, "0.45", "2026-12-01T11:00:00Z")
    return run_a, run_b, a


def test_a_changed_parameter_and_output_are_the_difference(two_runs):
    run_a, run_b, a = two_runs
    b = executed(run_b / "notebooks" / "train.ipynb", run_b, 0.3, "0.50", "2026-12-01T12:00:00Z")
    found = diff_notebook_files(a, b, run_a=run_a, run_b=run_b, label_a="A", label_b="B")
    assert found.changed
    lines = found.text.splitlines()
    assert "-  alpha = 1.0" in lines and "+  alpha = 0.3" in lines
    assert "-  score 0.45" in lines and "+  score 0.50" in lines
    assert f'   out = "{RUN_PLACEHOLDER}/scores.csv"' in lines  # the same line on both sides
    assert "## modified /cells/2/source:" in lines
    assert "## modified /cells/3/outputs/0/text:" in lines
    for noise in ("papermill", "execution_count", "2026-12-01", "/cells/0", "id:"):
        assert noise not in found.text
    (cells,) = found.diff  # nbdime's structure: one patch of /cells, at the two cells
    assert (cells["op"], cells["key"]) == ("patch", "cells")
    assert [entry["key"] for entry in cells["diff"]] == [2, 3]
    json.dumps(found.as_dict())  # plain data, for --json


def test_the_html_page_marks_each_line_and_escapes_the_notebooks_text(two_runs):
    run_a, run_b, a = two_runs
    b = executed(run_b / "notebooks" / "train.ipynb", run_b, 0.3, "0.50", "2026-12-01T12:00:00Z")
    nb = nbformat.read(b, as_version=4)
    nb.cells[4].outputs[0]["data"]["text/plain"] = f"'{XSS} changed'"
    nbformat.write(nb, b)
    page = diff_notebook_files(a, b, run_a=run_a, run_b=run_b, title="step train").html
    assert page.startswith("<!DOCTYPE html>") and "<title>step train: notebooks compared" in page
    assert '<span class="del">-  alpha = 1.0</span>' in page
    assert '<span class="add">+  alpha = 0.3</span>' in page
    assert '<span class="info">## modified /cells/2/source:</span>' in page
    assert "<script" not in page and "&lt;script&gt;" in page
    assert "<link" not in page and "src=" not in page  # standalone: nothing is fetched


def test_notebooks_differing_only_in_timings_ids_counts_and_run_folder_are_the_same(two_runs):
    run_a, run_b, a = two_runs
    b = executed(run_b / "notebooks" / "train.ipynb", run_b, 1.0, "0.45", "2026-12-01T12:00:00Z")
    assert a.read_text() != b.read_text()
    found = diff_notebook_files(a, b, run_a=run_a, run_b=run_b)
    assert not found.changed and found.diff == [] and found.text == ""
    assert '<p class="same">no difference</p>' in found.html
    assert format_notebook_diffs({"train": found}, ["train", "prep"]).splitlines() == [
        "notebooks (sources and outputs, nbdime)",
        "  train: no difference",
        "  prep: not compared (no executed notebook in one of the runs)",
    ]


def test_without_the_run_folders_their_paths_are_a_difference(two_runs):
    run_a, run_b, a = two_runs
    b = executed(run_b / "notebooks" / "train.ipynb", run_b, 1.0, "0.45", "2026-12-01T12:00:00Z")
    found = diff_notebook_files(a, b)
    assert found.changed and f'+  out = "{run_b}/scores.csv"' in found.text.splitlines()


def test_a_file_that_is_not_a_notebook_is_named(two_runs, tmp_path):
    _, _, a = two_runs
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{not json")
    with pytest.raises(NbmillError, match=f"{broken}: not a notebook that can be compared"):
        diff_notebook_files(a, broken)
    with pytest.raises(NbmillError, match="no such notebook"):
        diff_notebook_files(a, tmp_path / "missing.ipynb")


# -- two real runs through the command line ----------------------------------------------------


@pytest.fixture(scope="module")
def two_real_runs(tmp_path_factory):
    """Two runs of one pipeline, the second with `make.rows=5`: make and use run again and
    print other things; `note` runs again the same way; `fixed` comes from the cache."""
    project = tmp_path_factory.mktemp("notebook-diff")
    write_notebook(
        project / "notebooks" / "make.ipynb",
        'rows = 3\nout = "x.csv"',
        "from pathlib import Path\nPath(out).write_text('a\\n' * rows)\nprint('rows', rows)",
    )
    write_notebook(
        project / "notebooks" / "use.ipynb",
        'rows_file = "x.csv"',
        "from pathlib import Path\nprint(len(Path(rows_file).read_text().splitlines()), 'lines')",
    )
    write_notebook(
        project / "notebooks" / "note.ipynb",
        'note = "note.txt"',
        "from pathlib import Path\nPath(note).write_text('hello')\nprint('noted')",
    )
    write_notebook(project / "notebooks" / "fixed.ipynb", "k = 2", "print(k * 21)")
    (project / "pipelines" / "p.yml").parent.mkdir(exist_ok=True)
    (project / "pipelines" / "p.yml").write_text(
        yaml.safe_dump(
            {
                "name": "nbdiff",
                "steps": {
                    "make": {"notebook": "notebooks/make.ipynb", "outputs": {"out": "data/x.csv"}},
                    "use": {
                        "notebook": "notebooks/use.ipynb",
                        "needs": ["make"],
                        "inputs": {"rows_file": "data/x.csv"},
                    },
                    "note": {
                        "notebook": "notebooks/note.ipynb",
                        "outputs": {"note": "note.txt"},
                        "cache": False,
                    },
                    "fixed": {"notebook": "notebooks/fixed.ipynb"},
                },
            }
        )
    )
    first = nbmill("run", "pipelines/p.yml", "--reason", "a", cwd=project)
    second = nbmill("run", "pipelines/p.yml", "-p", "make.rows=5", "--reason", "b", cwd=project)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    run_a, run_b = sorted(p.name for p in (project / "runs").iterdir() if (p / "run.json").exists())
    return project, run_a, run_b


@pytest.mark.slow
def test_nbmill_diff_notebooks_prints_each_steps_difference(two_real_runs):
    project, run_a, run_b = two_real_runs
    second = json.loads((project / "runs" / run_b / "run.json").read_text())
    assert second["steps"]["fixed"]["status"] == "cached"  # its notebook is run a's
    done = nbmill("diff", run_a, run_b, "--notebooks", cwd=project)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "params" in text and "make.rows" in text  # the run diff is still there, first
    notebooks = text[text.index("notebooks (sources and outputs, nbdime)") :].splitlines()
    assert f"  make: {run_a}/notebooks/make.ipynb -> {run_b}/notebooks/make.ipynb" in notebooks
    assert "    -  rows 3" in notebooks and "    +  rows 5" in notebooks
    assert "    -  3 lines" in notebooks and "    +  5 lines" in notebooks
    assert "  note: no difference" in notebooks  # ran twice, in two run folders
    assert "  fixed: no difference" in notebooks


@pytest.mark.slow
def test_nbmill_diff_writes_one_html_page_per_step_and_json_for_scripts(two_real_runs, tmp_path):
    project, run_a, run_b = two_real_runs
    pages = tmp_path / "pages"
    done = nbmill("diff", run_a, run_b, "--html", str(pages), "--json", cwd=project)
    assert done.returncode == 0, done.stderr
    diff = json.loads(done.stdout)
    assert {step: d["changed"] for step, d in diff["notebooks"].items()} == {
        "make": True,
        "use": True,
        "note": False,
        "fixed": False,
    }
    assert diff["notebooks"]["make"]["diff"][0]["key"] == "cells"
    assert sorted(p.name for p in pages.iterdir()) == [
        "fixed.html",
        "make.html",
        "note.html",
        "use.html",
    ]
    assert f"html: {pages / 'make.html'}" in done.stderr
    make = (pages / "make.html").read_text()
    assert '<span class="add">+  rows 5</span>' in make
    assert '<p class="same">no difference</p>' in (pages / "note.html").read_text()


@pytest.mark.slow
def test_nbmill_diff_without_notebooks_is_unchanged(two_real_runs):
    project, run_a, run_b = two_real_runs
    done = nbmill("diff", run_a, run_b, "--json", cwd=project)
    assert "notebooks" not in json.loads(done.stdout)


def test_comparing_leaves_the_recorded_notebooks_untouched(two_runs):
    run_a, _, a = two_runs
    before = a.read_bytes()
    assert not diff_notebook_files(a, a, run_a=run_a, run_b=run_a).changed
    assert a.read_bytes() == before


@pytest.mark.slow
def test_the_runs_index_links_each_runs_notebook_changes_since_the_previous_run(two_real_runs):
    project, run_a, run_b = two_real_runs
    done = nbmill("report", cwd=project)
    assert done.returncode == 0, done.stderr
    folder = project / "runs" / "diffs" / run_b
    remembered = json.loads((folder / "changed.json").read_text())
    assert remembered == {"previous": run_a, "steps": ["make", "use"]}
    assert "+  rows 5" in (folder / "make.html").read_text()
    index = (project / "runs" / "index.html").read_text()
    assert f'href="diffs/{run_b}/make.html"' in index and f'href="diffs/{run_b}/use.html"' in index
    assert not (project / "runs" / "diffs" / run_a).exists()  # the first run has nothing before it
    before = (folder / "make.html").stat().st_mtime_ns
    assert nbmill("report", cwd=project).returncode == 0
    assert (folder / "make.html").stat().st_mtime_ns == before  # compared once, remembered
    verified = nbmill("verify", cwd=project)
    assert verified.returncode == 0, verified.stdout + verified.stderr  # run folders untouched
