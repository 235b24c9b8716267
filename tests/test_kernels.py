"""Kernels started one step ahead are still fresh: modules imported, no names bound."""

from __future__ import annotations

import json

import pytest
import yaml

from nbmill.pipeline.kernels import notebook_imports
from tests.conftest import load_run, nbmill, only_run, write_notebook


def test_imports_are_read_from_code_cells_in_order(tmp_path):
    path = write_notebook(
        tmp_path / "n.ipynb",
        "x = 1",
        "%matplotlib inline\nimport json, os.path\nfrom collections import abc as c",
        "from . import local\nimport json",
        "def f(:\n  broken",
    )
    assert notebook_imports(path) == ["json", "os.path", "collections", "collections.abc"]


PROBE = (
    "import sys\n"
    "print(json.dumps({'preloaded': 'colorsys' in sys.modules,\n"
    "                  'bound': sorted(n for n in globals() if 'colorsys' in n or 'nbmill' in n),\n"
    "                  'count': get_ipython().execution_count}))\n"
)


@pytest.mark.slow
@pytest.mark.parametrize("warm", [True, False], ids=["warm", "no-warm"])
def test_a_step_kernel_has_no_names_from_the_warm_up(project, warm):
    write_notebook(
        project / "notebooks" / "first.ipynb",
        'x = 1\nrun_dir = "."',
        "from pathlib import Path\nassert (Path(run_dir) / 'run.json').exists()",
    )
    write_notebook(
        project / "notebooks" / "probe.ipynb", "x = 1", "import json", PROBE, "import colorsys"
    )
    spec = {
        "name": "k",
        "steps": {
            "first": {"notebook": "notebooks/first.ipynb"},
            "probe": {"notebook": "notebooks/probe.ipynb", "needs": ["first"]},
        },
    }
    (project / "pipelines" / "k.yml").write_text(yaml.safe_dump(spec))
    done = nbmill("run", "pipelines/k.yml", *([] if warm else ["--no-warm"]), cwd=project)
    assert done.returncode == 0, done.stderr
    run_dir = only_run(project / "runs")
    nb = json.loads((run_dir / "notebooks" / "probe.ipynb").read_text())
    text = next(
        "".join(o["text"]) for c in nb["cells"] for o in c.get("outputs", []) if "text" in o
    )
    probe = json.loads(text)
    assert probe["bound"] == []  # no name from the warm-up reaches the notebook
    assert probe["preloaded"] is warm  # ...but the module the notebook imports later is loaded
    assert probe["count"] == 4  # parameters, injected, import, probe: execution counts unchanged
    assert load_run(run_dir)["status"] == "completed"


LAZY = (
    "import sys\nfrom pathlib import Path\nimport lazyhelper\n"
    "Path(run_dir, 'before.txt').write_text(str('wave' in sys.modules))\n"
    "Path(run_dir, 'after.txt').write_text(lazyhelper.name())"
)


@pytest.mark.slow
def test_what_a_step_imported_on_first_use_is_preloaded_for_its_next_run(project, tmp_path):
    """The notebook imports a helper that imports ``wave`` only when called: the first run
    learns it, the second run's kernel has it loaded before any cell asks; and what a module
    prints while the template imports it stays out of the run's output."""
    (project / "lazyhelper.py").write_text(
        "print('lazyhelper imported: noise')\n"
        "def name():\n    import wave\n    return wave.__name__\n"
    )
    write_notebook(project / "notebooks" / "lazy.ipynb", "run_dir = ''", LAZY)
    spec = {"name": "lz", "steps": {"lazy": {"notebook": "notebooks/lazy.ipynb", "cache": False}}}
    (project / "pipelines" / "lz.yml").write_text(yaml.safe_dump(spec))
    env = {"PYTHONPATH": str(project), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    seen = []
    for _ in range(2):
        done = nbmill("run", "pipelines/lz.yml", cwd=project, env=env)
        assert done.returncode == 0, done.stderr
        assert "noise" not in done.stdout + done.stderr
        newest = sorted(p for p in (project / "runs").iterdir() if (p / "run.json").exists())[-1]
        assert (newest / "after.txt").read_text() == "wave"
        seen.append((newest / "before.txt").read_text())
    assert seen == ["False", "True"]
    learned = list((tmp_path / "cache" / "nbmill" / "imports").glob("*.json"))
    assert len(learned) == 1 and "wave" in json.loads(learned[0].read_text())["modules"]


@pytest.mark.slow
def test_a_run_refused_before_it_starts_leaves_no_template_behind(project):
    from nbmill.cli import main
    from tests.test_runner import forkservers_of_this_process

    write_notebook(project / "notebooks" / "a.ipynb", "x = 1", "y = x")
    spec = {"name": "p", "steps": {"a": {"notebook": "notebooks/a.ipynb"}}}
    (project / "pipelines" / "p.yml").write_text(yaml.safe_dump(spec))
    before = forkservers_of_this_process()
    assert main(["run", str(project / "pipelines" / "p.yml"), "-p", "a.nope=1"]) == 1
    assert forkservers_of_this_process() == before
