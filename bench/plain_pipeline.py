"""The default pipeline's notebooks as one plain Python script: the floor for bench/pipeline.py.

Each notebook's parameters cell, then the run folder's paths (as the runner would inject them),
then its code cells, executed in order in this one process: the same code, with no kernels,
no papermill and no record.

    python bench/plain_pipeline.py OUT_DIR
"""

import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]


def paths(out: Path) -> dict[str, dict[str, str]]:
    data = out / "data"
    return {
        "prep": {"train_data": data / "train.csv", "test_data": data / "test.csv"},
        "train": {"train_data": data / "train.csv", "model_dir": out / "model"},
        "evaluate": {
            "test_data": data / "test.csv",
            "model_dir": out / "model",
            "eval_dir": out / "eval",
        },
        "deploy": {
            "model_dir": out / "model",
            "test_data": data / "test.csv",
            "package_dir": out / "package",
        },
    }


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for step, injected in paths(out).items():
        nb = nbformat.read(ROOT / "notebooks" / f"{step}.ipynb", as_version=4)
        namespace: dict = {"__name__": f"plain_{step}"}
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            exec(compile(cell.source, f"{step}.ipynb", "exec"), namespace)
            if "parameters" in cell.metadata.get("tags", []):
                namespace.update({k: str(v) for k, v in injected.items()})


if __name__ == "__main__":
    main(Path(sys.argv[1]))
