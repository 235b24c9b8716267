"""How often the partial notebook is saved, and what it costs: papermill's engine against nbmill's.

    .venv/bin/python bench/saves.py [--cells 300] [--repeat 3]

papermill writes the whole notebook when every cell starts and when it ends. nbmill's engine
writes it when execution starts, when a cell raises, at the end, and otherwise at most every
10 s. One notebook of many small cells (each prints a line, so the notebook grows) runs through
``papermill.execute_notebook`` with each engine in turn, in one kernel each; the table shows the
median time and how many times the output file was written. Figures, not asserts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook


def notebook(path: Path, cells: int) -> Path:
    nb = new_notebook(
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        }
    )
    nb.cells = [new_code_cell(f"print('cell {i}', 'x' * 200)") for i in range(cells)]
    nbformat.write(nb, path)
    return path


def execute(source: Path, output: Path, engine: str) -> tuple[float, int]:
    import papermill
    from papermill import iorw

    writes = 0
    real = iorw.write_ipynb

    def counting(nb, path, *args, **kwargs):
        nonlocal writes
        writes += 1
        return real(nb, path, *args, **kwargs)

    iorw.write_ipynb = counting
    import papermill.engines

    papermill.engines.write_ipynb = counting
    try:
        began = time.perf_counter()
        papermill.execute_notebook(
            str(source), str(output), engine_name=engine, progress_bar=False, kernel_name="python3"
        )
        return time.perf_counter() - began, writes
    finally:
        iorw.write_ipynb = real
        papermill.engines.write_ipynb = real


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from nbmill.pipeline.execute import ENGINE, _register_engine

    _register_engine()
    work = Path(tempfile.mkdtemp(prefix="nbmill-bench-saves-"))
    source = notebook(work / "many.ipynb", args.cells)
    results: dict[str, list[tuple[float, int]]] = {"papermill (nbclient)": [], "nbmill": []}
    for _ in range(args.repeat):
        for label, engine in (("papermill (nbclient)", "nbclient"), ("nbmill", ENGINE)):
            results[label].append(execute(source, work / f"{engine}.ipynb", engine))
            print(f"  {label}: {results[label][-1][0]:.2f} s", file=sys.stderr)
    size = (work / "nbclient.ipynb").stat().st_size // 1024
    print(f"\n{args.cells} cells, output notebook {size} KiB, {args.repeat} runs each\n")
    print("| engine | median s | writes of the output notebook |")
    print("|---|---:|---:|")
    for label, values in results.items():
        seconds = statistics.median(v[0] for v in values)
        print(f"| {label} | {seconds:.2f} | {values[0][1]} |")


if __name__ == "__main__":
    main()
