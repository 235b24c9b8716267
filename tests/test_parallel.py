"""Steps whose needs are done run at the same time; every step, forked or not, is a fresh
process that shares no state with any other."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
import yaml

from tests.conftest import load_run, nbmill, only_run, write_notebook

pytestmark = pytest.mark.slow


def when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_the_two_branches_of_a_diamond_overlap(project):
    sleep = "import time\ntime.sleep(3)"
    for name in ("top", "left", "right", "bottom"):
        write_notebook(
            project / "notebooks" / f"{name}.ipynb",
            "x = 1",
            sleep if name in ("left", "right") else "y = x",
        )
    steps = {
        "top": {"notebook": "notebooks/top.ipynb"},
        "left": {"notebook": "notebooks/left.ipynb", "needs": ["top"]},
        "right": {"notebook": "notebooks/right.ipynb", "needs": ["top"]},
        "bottom": {"notebook": "notebooks/bottom.ipynb", "needs": ["left", "right"]},
    }
    (project / "pipelines" / "d.yml").write_text(yaml.safe_dump({"name": "d", "steps": steps}))
    done = nbmill("run", "pipelines/d.yml", "--jobs", "2", cwd=project)
    assert done.returncode == 0, done.stderr
    run = load_run(only_run(project / "runs"))
    left, right, top, bottom = (run["steps"][n] for n in ("left", "right", "top", "bottom"))
    assert when(left["started_at"]) < when(right["ended_at"])
    assert when(right["started_at"]) < when(left["ended_at"])  # they overlapped
    assert when(top["ended_at"]) <= when(min(left["started_at"], right["started_at"]))
    assert when(bottom["started_at"]) >= when(max(left["ended_at"], right["ended_at"]))
    assert run["runner"]["jobs"] == 2


def test_with_one_job_the_branches_run_one_after_the_other(project):
    for name in ("a", "b"):
        write_notebook(
            project / "notebooks" / f"{name}.ipynb", "x = 1", "import time\ntime.sleep(1)"
        )
    steps = {"a": {"notebook": "notebooks/a.ipynb"}, "b": {"notebook": "notebooks/b.ipynb"}}
    (project / "pipelines" / "s.yml").write_text(yaml.safe_dump({"name": "s", "steps": steps}))
    assert nbmill("run", "pipelines/s.yml", "--jobs", "1", cwd=project).returncode == 0
    a, b = (load_run(only_run(project / "runs"))["steps"][n] for n in ("a", "b"))
    assert when(b["started_at"]) >= when(a["ended_at"])


PROBE = (
    "import json, os, sys\nimport numpy as np\nfrom pathlib import Path\n"
    "state = {'pid': os.getpid(), 'random': float(np.random.rand()),\n"
    "         'leaked_name': 'leaked' in globals(), 'leaked_env': 'NBMILL_LEAK' in os.environ,\n"
    "         'leaked_attr': hasattr(json, 'nbmill_leak')}\n"
    "Path(run_dir, f'{step}.json').write_text(json.dumps(state))\n"
    "leaked = True\nos.environ['NBMILL_LEAK'] = '1'\njson.nbmill_leak = True"
)


@pytest.mark.parametrize("warm", [True, False], ids=["forked", "no-warm"])
def test_no_step_sees_what_another_set_and_each_is_its_own_process(project, warm):
    for name in ("one", "two", "three"):
        write_notebook(
            project / "notebooks" / f"{name}.ipynb", f"run_dir = ''\nstep = '{name}'", PROBE
        )
    late = (
        "import importlib\nwave = importlib.import_module('wave')\n"  # never preloaded
        "from pathlib import Path\nPath(run_dir, 'late.txt').write_text(wave.__name__)"
    )
    write_notebook(project / "notebooks" / "late.ipynb", "run_dir = ''", late)
    steps = {
        "one": {"notebook": "notebooks/one.ipynb"},
        "two": {"notebook": "notebooks/two.ipynb", "needs": ["one"]},
        "three": {"notebook": "notebooks/three.ipynb", "needs": ["two"]},
        "late": {"notebook": "notebooks/late.ipynb", "needs": ["three"]},
    }
    (project / "pipelines" / "i.yml").write_text(yaml.safe_dump({"name": "i", "steps": steps}))
    args = ["run", "pipelines/i.yml"] + ([] if warm else ["--no-warm"])
    done = nbmill(*args, cwd=project)
    assert done.returncode == 0, done.stderr
    run_dir = only_run(project / "runs")
    assert load_run(run_dir)["runner"]["kernels"] == ("fork" if warm else "plain")
    states = [json.loads((run_dir / f"{n}.json").read_text()) for n in ("one", "two", "three")]
    assert len({s["pid"] for s in states}) == 3
    assert len({s["random"] for s in states}) == 3  # numpy's global RNG was reseeded
    for state in states:
        assert not (state["leaked_name"] or state["leaked_env"] or state["leaked_attr"])
    assert (run_dir / "late.txt").read_text() == "wave"
