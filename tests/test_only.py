"""``nbmill run --only STEP``: one step and what it needs, the steps after it left out."""

from __future__ import annotations

import pytest
import yaml

from nbmill.errors import NbmillError
from nbmill.pipeline.runner import run
from tests.conftest import write_notebook


def chain(project) -> None:
    """a -> b -> c, and d beside them (needing nothing)."""
    for name in "abcd":
        write_notebook(project / "notebooks" / f"{name}.ipynb", "x = 1", "y = x + 1")
    steps = {
        "a": {"notebook": "notebooks/a.ipynb"},
        "b": {"notebook": "notebooks/b.ipynb", "needs": ["a"]},
        "c": {"notebook": "notebooks/c.ipynb", "needs": ["b"]},
        "d": {"notebook": "notebooks/d.ipynb"},
    }
    (project / "pipelines" / "chain.yml").write_text(
        yaml.safe_dump({"name": "chain", "steps": steps})
    )


def statuses(record) -> dict[str, str]:
    return {name: step.status for name, step in record.doc.steps.items()}


def test_only_a_step_runs_it_and_what_it_needs_and_leaves_the_rest_out(project):
    chain(project)
    record = run(project / "pipelines" / "chain.yml", project_dir=project, only=["b"])
    assert record.status == "completed"
    assert statuses(record) == {"a": "completed", "b": "completed", "c": "skipped", "d": "skipped"}
    assert record.data["runner"]["only"] == ["b"]


def test_what_a_step_needs_comes_from_the_cache_when_it_has_it(project):
    chain(project)
    run(project / "pipelines" / "chain.yml", project_dir=project)
    again = run(project / "pipelines" / "chain.yml", project_dir=project, only=["c"], force=["c"])
    assert statuses(again) == {"a": "cached", "b": "cached", "c": "completed", "d": "skipped"}


def test_an_unknown_step_is_refused_by_name_before_anything_runs(project):
    chain(project)
    with pytest.raises(NbmillError, match=r"--only: unknown step 'e' \(steps: a, b, c, d\)"):
        run(project / "pipelines" / "chain.yml", project_dir=project, only=["e"])
    assert not (project / "runs").exists() or not list((project / "runs").glob("2*"))
