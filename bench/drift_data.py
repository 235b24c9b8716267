"""Synthetic data for the drift benchmark: a reference and a current table with known shifts.

Twelve features: ten numeric ``n0..n9`` (float64, each from a different distribution) and two
categorical ``c0`` (5 values) and ``c1`` (8 values), as strings with unequal frequencies. Both
tables are drawn from the same distributions except for four features:

- ``n0``, normal: its mean moves by half a standard deviation (normalised Wasserstein ~0.50);
- ``n3``, exponential: its scale grows from 2 to 2.8 (normalised Wasserstein ~0.40);
- ``n7``, normal: its standard deviation grows 1.5 times (normalised Wasserstein ~0.40);
- ``c1``: its frequencies flatten (Jensen-Shannon distance, natural log, ~0.27).

The normalised Wasserstein distance is ``wasserstein_distance(ref, cur) / std(ref)``; every
unshifted feature is near 0 (sampling noise, about 1/sqrt(rows)).

The files are Parquet (the default), NumPy ``.npz`` archives (one array per column, strings as
fixed-width unicode, so no pickle) or CSV. They are cached in the folder, by rows, seed and
format: a second call with the same arguments reuses them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

Format = Literal["parquet", "npz", "csv"]
VERSION = 1  # bump when the recipe changes, so cached files of an older recipe are not reused
NUMERIC = [f"n{i}" for i in range(10)]
CATEGORICAL = ["c0", "c1"]
SHIFTED = ["n0", "n3", "n7", "c1"]
C0_VALUES = ["alpha", "beta", "gamma", "delta", "epsilon"]
C0_P = [0.40, 0.25, 0.15, 0.12, 0.08]
C1_VALUES = [f"k{i}" for i in range(8)]
C1_P = [0.30, 0.20, 0.15, 0.10, 0.08, 0.07, 0.06, 0.04]
C1_P_SHIFTED = [0.10, 0.10, 0.12, 0.12, 0.12, 0.14, 0.15, 0.15]


@dataclass(frozen=True)
class Dataset:
    """The two tables' files, the columns by kind, and the columns with a known shift."""

    reference: Path
    current: Path
    numeric: list[str]
    categorical: list[str]
    shifted: list[str]
    rows: int


def columns(rows: int, rng: np.random.Generator, shift: bool) -> dict[str, np.ndarray]:
    """One table's columns, in order; ``shift`` applies the known shifts."""
    table = {
        "n0": rng.normal(100.0 + (7.5 if shift else 0.0), 15.0, rows),
        "n1": rng.lognormal(0.0, 0.75, rows),
        "n2": rng.uniform(-1.0, 1.0, rows),
        "n3": rng.exponential(2.8 if shift else 2.0, rows),
        "n4": rng.gamma(2.0, 3.0, rows),
        "n5": rng.beta(2.0, 5.0, rows),
        "n6": rng.standard_t(5.0, rows),
        "n7": rng.normal(0.0, 1.5 if shift else 1.0, rows),
        "n8": rng.weibull(1.5, rows) * 10.0,
        "n9": np.where(
            rng.random(rows) < 0.7, rng.normal(0.0, 1.0, rows), rng.normal(4.0, 0.5, rows)
        ),
    }
    table["c0"] = np.asarray(C0_VALUES)[rng.choice(len(C0_VALUES), rows, p=C0_P)]
    c1_p = C1_P_SHIFTED if shift else C1_P
    table["c1"] = np.asarray(C1_VALUES)[rng.choice(len(C1_VALUES), rows, p=c1_p)]
    return table


def _write(path: Path, table: dict[str, np.ndarray], fmt: Format) -> None:
    """Write ``table`` to ``path`` through a temporary file, so a partial file is never reused."""
    partial = path.with_name(path.name + ".partial")
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({name: pa.array(v) for name, v in table.items()}), partial)
    elif fmt == "npz":
        with partial.open("wb") as handle:
            np.savez(handle, **table)
    else:
        import pandas as pd  # only the CSV writer needs it

        pd.DataFrame(table).to_csv(partial, index=False)
    os.replace(partial, path)


def make(folder: Path, rows: int = 1_000_000, seed: int = 7, fmt: Format = "parquet") -> Dataset:
    """The reference and current files for (rows, seed) in ``folder``, made unless there."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"drift-v{VERSION}-{rows}-{seed}"
    reference = folder / f"{stem}-reference.{fmt}"
    current = folder / f"{stem}-current.{fmt}"
    for path, stream, shift in ((reference, 0, False), (current, 1, True)):
        if not path.exists():
            rng = np.random.default_rng([seed, stream])
            _write(path, columns(rows, rng, shift), fmt)
    return Dataset(reference, current, list(NUMERIC), list(CATEGORICAL), list(SHIFTED), rows)


def distances(dataset: Dataset) -> dict[str, float]:
    """Each column's distance between the two files: normalised Wasserstein for the numeric
    ones, Jensen-Shannon (natural log) of the value frequencies for the categorical ones."""
    import pandas as pd
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import wasserstein_distance

    ref, cur = load(dataset.reference), load(dataset.current)
    out = {}
    for name in dataset.numeric:
        out[name] = float(wasserstein_distance(ref[name], cur[name]) / np.std(ref[name]))
    for name in dataset.categorical:
        counts = pd.DataFrame({"ref": ref[name].value_counts(), "cur": cur[name].value_counts()})
        counts = counts.fillna(0.0)
        out[name] = float(jensenshannon(counts["ref"], counts["cur"]))
    return out


def _strings(values: np.ndarray) -> np.ndarray:
    """Fixed-width unicode as an object array holding one str per distinct value, as the CSV
    and Parquet readers give (a str a row would cost some 50 bytes a row more)."""
    distinct, inverse = np.unique(values, return_inverse=True)
    return distinct.astype(object)[inverse]


def load(path: Path) -> pd.DataFrame:
    """A file written by ``make`` as a pandas DataFrame."""
    import pandas as pd

    path = Path(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        return pd.read_csv(path)
    with np.load(path, allow_pickle=False) as archive:
        table = {name: archive[name] for name in archive.files}
    return pd.DataFrame(
        {name: _strings(v) if v.dtype.kind == "U" else v for name, v in table.items()}
    )


if __name__ == "__main__":
    import argparse
    import time

    parser = argparse.ArgumentParser(description="Make the drift benchmark's data.")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--format", choices=["parquet", "npz", "csv"], default="parquet")
    parser.add_argument("--distances", action="store_true", help="print each column's distance")
    args = parser.parse_args()
    started = time.perf_counter()
    made = make(args.folder, args.rows, args.seed, args.format)
    print(f"{made.reference} and {made.current} in {time.perf_counter() - started:.2f} s")
    if args.distances:
        for column, value in distances(made).items():
            mark = " (shifted)" if column in made.shifted else ""
            print(f"{column}: {value:.4f}{mark}")
