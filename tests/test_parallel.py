"""Steps whose needs are done run at the same time; every step, forked or not, is a fresh
process that shares no state with any other."""

from __future__ import annotations

import json
import os
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


BRANCH = (
    "import json, os, time\nfrom pathlib import Path\nfrom nbmill import tracking\n"
    "time.sleep(delay)\n"
    "tracking.log_metrics({'branch': branch})\n"
    "seen = {'cwd': os.getcwd(), 'step': os.environ['NBMILL_STEP']}\n"
    "Path(run_dir, f'{name}.json').write_text(json.dumps(seen))"
)
THREADED = (
    "import threading, time\n"
    "threading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n"
)


@pytest.mark.parametrize("mode", ["forked", "no-warm", "template-refused"])
def test_parallel_steps_each_get_their_own_folder_and_environment(project, monkeypatch, mode):
    """A diamond whose branches live in different folders, two at once: each kernel works in
    its notebook's folder with its own step's environment, and the runner's own working
    directory never moves (papermill's cwd option would chdir the whole process)."""
    from nbmill.pipeline.runner import run

    imports = "import threaded\n" if mode == "template-refused" else ""
    (project / "threaded.py").write_text(THREADED)  # a thread at import: no fork after it
    monkeypatch.setenv("PYTHONPATH", str(project))
    write_notebook(project / "notebooks" / "top.ipynb", "x = 1", imports + "y = x")
    for number, (name, delay) in enumerate([("left", 0.3), ("right", 1.2)], start=1):
        write_notebook(
            project / "notebooks" / name / f"{name}.ipynb",
            f"run_dir = ''\nname = '{name}'\ndelay = {delay}\nbranch = {number}",
            imports + BRANCH,
        )
    write_notebook(project / "notebooks" / "bottom.ipynb", "x = 1", "y = x")
    steps = {
        "top": {"notebook": "notebooks/top.ipynb"},
        "left": {"notebook": "notebooks/left/left.ipynb", "needs": ["top"]},
        "right": {"notebook": "notebooks/right/right.ipynb", "needs": ["top"]},
        "bottom": {"notebook": "notebooks/bottom.ipynb", "needs": ["left", "right"]},
    }
    spec = project / "pipelines" / "d.yml"
    spec.write_text(yaml.safe_dump({"name": "d", "steps": steps}))
    here = os.getcwd()
    for _ in range(3):
        record = run(spec, project_dir=project, jobs=2, warm=mode != "no-warm", force=["*"])
        assert os.getcwd() == here
        for number, name in enumerate(["left", "right"], start=1):
            seen = json.loads((record.dir / f"{name}.json").read_text())
            assert seen == {"cwd": str(project / "notebooks" / name), "step": name}
            assert record.doc.metrics[f"{name}.branch"] == number
        left, right = record.step("left"), record.step("right")
        assert when(left.started_at) < when(right.ended_at)  # they overlapped
        assert when(right.started_at) < when(left.ended_at)
