"""Batch scoring: ``nbmill score`` on a 1M-row file, beside the plainest way to do it.

    .venv/bin/python bench/score.py [--rows 1000000] [--repeat 3]

The diabetes model (the default pipeline's, trained here); its ten features, resampled with a
little noise to ``--rows`` rows, written once as CSV and once as Parquet. Each variant reads the
file, scores every row and writes the input's columns plus the prediction:

- ``plain pandas``: ``read_csv``/``read_parquet`` of the whole file, one ``model.predict``, one
  ``to_csv``/``to_parquet``, in one process: the floor, with nothing checked or collected.
- ``nbmill score``: chunks of 50,000 rows checked against the signature, scored by worker
  processes (1, then every core), written in order; with and without collection (every row
  into the collector's JSON lines, as online requests are).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from nbmill.serving.batch import score_file
    from nbmill_example import diabetes

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="nbmill-bench-score-"))
    data = diabetes.load()
    train, _ = diabetes.split(data, test_size=0.2, seed=42)
    fitted = diabetes.fit(train, alpha=1.0)
    diabetes.save_model(fitted, train, base / "model")
    rng = np.random.default_rng(7)
    rows = data[diabetes.FEATURES].sample(args.rows, replace=True, random_state=7)
    rows = rows + rng.normal(0, 0.001, size=rows.shape)
    rows.reset_index(drop=True).to_csv(base / "in.csv", index=False)
    rows.reset_index(drop=True).to_parquet(base / "in.parquet", index=False)
    del rows

    def plain(suffix: str) -> None:
        frame = (
            pd.read_csv(base / f"in{suffix}")
            if suffix == ".csv"
            else pd.read_parquet(base / f"in{suffix}")
        )
        frame["prediction"] = fitted.predict(frame[diabetes.FEATURES].to_numpy(dtype=float))
        if suffix == ".csv":
            frame.to_csv(base / "plain.csv", index=False)
        else:
            frame.to_parquet(base / "plain.parquet", index=False)

    import os

    cores = os.cpu_count() or 1
    variants = {}
    for suffix in (".csv", ".parquet"):
        variants[f"plain pandas, {suffix[1:]}"] = lambda s=suffix: plain(s)
        for workers in sorted({1, cores}):
            variants[f"nbmill score, {suffix[1:]}, {workers} process(es), no collection"] = (
                lambda s=suffix, w=workers: score_file(
                    str(base / "model"), base, base / f"in{s}", base / f"out{s}", workers=w
                )
            )
        variants[f"nbmill score, {suffix[1:]}, {cores} processes, collected"] = (
            lambda s=suffix: score_file(str(base / "model"), base, base / f"in{s}",
                                        base / f"out{s}", collect_dir=base / "collected",
                                        workers=cores)
        )  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeat):
        for name, variant in variants.items():  # interleaved: drift hits every variant
            began = time.perf_counter()
            variant()
            times[name].append(time.perf_counter() - began)
    width = max(map(len, times))
    print(f"{args.rows:,} rows, median of {args.repeat}")
    for name, taken in times.items():
        median = statistics.median(taken)
        print(f"  {name:<{width}}  {median:6.2f} s  {args.rows / median:>10,.0f} rows/s")


if __name__ == "__main__":
    main()
