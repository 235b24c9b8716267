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
