"""What collection costs the serving process, per request, against what it cost when the
serving process formatted the JSON lines itself (a thread sharing its GIL), which is now the
collection writer's work in a process of its own.

    .venv/bin/python bench/collect.py [--requests 5000]

For 1-row and 100-row requests of 10 float columns: *serving process* is ``Collector.add`` plus
packing the frame and writing it to the pipe (``pack`` and the frame's pickle), the time the GIL
is held for collection; *writer process* is ``LineWriter.write`` of the same requests (JSON
lines, fsync included), the cost that used to be paid in the serving process. Figures, not
asserts.
"""

from __future__ import annotations

import argparse
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np

from nbmill.serving.collect import Deployment, Scored, pack
from nbmill.serving.collect_writer import LineWriter

COLUMNS = tuple(f"x{i}" for i in range(10))


def requests(count: int, rows: int) -> list[Scored]:
    rng = np.random.default_rng(0)
    at = time.time()
    return [
        Scored(at, 200, 0.001, f"req-{i}", rng.normal(size=(rows, 10)), rng.normal(size=rows))
        for i in range(count)
    ]


def best_of(repeat: int, work) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        work()
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    args = parser.parse_args()
    where = Deployment("bench", "blue", COLUMNS, "bench", "1", instance="i0")
    print(f"{args.requests} requests a run, best of 5, microseconds per request\n")
    print("| request | serving process (pack + pickle) | writer process (JSON lines + fsync) |")
    print("|---|---:|---:|")
    with tempfile.TemporaryDirectory() as scratch:
        writer = LineWriter(Path(scratch), where, 16 << 20)
        for rows in (1, 100):
            items = requests(args.requests, rows)

            def ship(items=items):
                packed, _ = pack(items, len(COLUMNS))
                pickle.dumps((1, packed), protocol=5)

            served = best_of(5, ship) / len(items) * 1e6
            written = best_of(5, lambda items=items: writer.write(items)) / len(items) * 1e6
            print(f"| {rows} row{'s' * (rows > 1)} | {served:.1f} | {written:.1f} |")


if __name__ == "__main__":
    main()
