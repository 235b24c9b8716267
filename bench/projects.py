"""Small projects the pipeline benchmark writes into a temporary folder.

- ``tiny``: four chained notebooks, each importing scikit-learn and pandas and doing almost
  nothing else, in nbmill's form and in Ploomber's (the same code cells; each tool's own
  parameters cell: nbmill injects ``inp``/``out`` paths, Ploomber ``upstream``/``product``).
- ``diamond``: top, two middle steps that each sleep 5 s, bottom; and the chain top, left,
  bottom alone (the longer branch), to compare with.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import yaml
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

STEPS = ("one", "two", "three", "four")
WORK = (
    "import pandas as pd\n"
    "from sklearn.preprocessing import StandardScaler\n"
    "frame = pd.DataFrame({'x': [1.0, 2.0, 3.0], 'y': [2.0, 4.0, 6.5]})\n"
    "scaled = StandardScaler().fit_transform(frame)"
)


def notebook(path: Path, parameters: str, *cells: str) -> None:
    nb = new_notebook(
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        }
    )
    nb.cells.append(new_markdown_cell(f"# {path.stem}"))
    cell = new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    nb.cells.append(cell)
    nb.cells.extend(new_code_cell(source) for source in cells)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def tiny_nbmill(root: Path) -> Path:
    (root / "pipelines").mkdir(parents=True, exist_ok=True)
    steps = {}
    for i, name in enumerate(STEPS):
        first = i == 0
        notebook(
            root / "notebooks" / f"{name}.ipynb",
            "out = ''" if first else "inp = ''\nout = ''",
            WORK,
            "from pathlib import Path\n"
            + (
                "Path(out).write_text('0')"
                if first
                else "Path(out).write_text(Path(inp).read_text() + '1')"
            ),
        )
        step = {"notebook": f"notebooks/{name}.ipynb", "outputs": {"out": f"{name}.txt"}}
        if not first:
            step.update(needs=[STEPS[i - 1]], inputs={"inp": f"{STEPS[i - 1]}.txt"})
        steps[name] = step
    (root / "pipelines" / "tiny.yml").write_text(yaml.safe_dump({"name": "tiny", "steps": steps}))
    return root


def tiny_ploomber(root: Path) -> Path:
    tasks = []
    for i, name in enumerate(STEPS):
        first = i == 0
        upstream = "None" if first else repr([STEPS[i - 1]])
        notebook(
            root / f"{name}.ipynb",
            f"upstream = {upstream}\nproduct = None",
            WORK,
            "from pathlib import Path\n"
            + (
                "Path(product['data']).write_text('0')"
                if first
                else f"Path(product['data']).write_text(Path(upstream['{STEPS[i - 1]}']['data'])"
                ".read_text() + '1')"
            ),
        )
        tasks.append(
            {
                "source": f"{name}.ipynb",
                "product": {"nb": f"out/{name}.ipynb", "data": f"out/{name}.txt"},
            }
        )
    (root / "pipeline.yaml").write_text(yaml.safe_dump({"tasks": tasks}))
    return root


def diamond(root: Path, branches: tuple[str, ...] = ("left", "right")) -> Path:
    """top -> each branch (sleeps 5 s) -> bottom, in nbmill's form."""
    (root / "pipelines").mkdir(parents=True, exist_ok=True)
    for name in ("top", "bottom", *branches):
        work = "import time\ntime.sleep(5)" if name in branches else "y = x + 1"
        notebook(root / "notebooks" / f"{name}.ipynb", "x = 1", work)
    steps = {"top": {"notebook": "notebooks/top.ipynb"}}
    for branch in branches:
        steps[branch] = {"notebook": f"notebooks/{branch}.ipynb", "needs": ["top"]}
    steps["bottom"] = {"notebook": "notebooks/bottom.ipynb", "needs": list(branches)}
    (root / "pipelines" / "diamond.yml").write_text(
        yaml.safe_dump({"name": "diamond", "steps": steps})
    )
    return root
