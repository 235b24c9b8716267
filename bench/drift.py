"""Drift on a large window: nbmill's monitor against Evidently's DataDriftPreset, same data.

    .venv/bin/python bench/drift.py [--rows 1000000] [--repeat 1] [--no-evidently]

The data (bench/drift_data.py): 12 features, 10 numeric and 2 categorical, reference and current
``--rows`` rows each, as Parquet, with known shifts in n0, n3, n7 and c1. Each tool runs in a
process of its own, reads both files and judges every feature with its defaults (normalised
Wasserstein distance over 0.1 for numeric features, Jensen-Shannon distance over 0.1 for
categorical ones, for both); the table shows wall time (reading, profiling the reference and
judging the current data; imports apart), peak RSS, and the features each flags.

nbmill profiles the reference a column at a time (as at training time, into the baseline saved
with a model) and reads the current file a column of a row group at a time, so its memory is
bounded by one column. It then also reads the same current rows from a collection in
Azure ML's data collector layout (JSON lines, 100 rows a request), as ``nbmill serve`` writes
it: the monitor's real input.

Evidently 0.7 needs pandas<3: it runs from its own virtual environment, .bench-venvs/evidently
(bench/drift_peer.py makes it on first use).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import drift_data  # noqa: E402
import drift_peer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "results" / "drift-data"
ROWS_PER_REQUEST = 100


def _numbers(column):
    """A pyarrow ChunkedArray of numbers as numpy, chunk by chunk (its own to_numpy is slow)."""
    import numpy as np

    return np.concatenate([chunk.to_numpy(zero_copy_only=False) for chunk in column.chunks])


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def nbmill_worker(reference: Path, current: Path) -> dict:
    """In a fresh process: profile the reference, then judge the current file."""
    began = time.perf_counter()
    import pyarrow.parquet as pq

    from nbmill.monitor.collected import Column
    from nbmill.monitor.profile import Profile, profile_column
    from nbmill.monitor.verdict import Monitor

    imported = time.perf_counter()
    import_rss = _peak_rss_mib()
    numeric, categorical = drift_data.NUMERIC, drift_data.CATEGORICAL
    source = pq.ParquetFile(reference)
    features = {}
    for name in numeric + categorical:
        column = source.read(columns=[name]).column(0)
        values = _numbers(column) if name in numeric else column
        features[name] = profile_column(values, categorical=name in categorical)
    profiled = time.perf_counter()
    monitor = Monitor(Profile(rows=source.metadata.num_rows, features=features))
    window = pq.ParquetFile(current)
    for group in range(window.metadata.num_row_groups):  # a column of a row group at a time
        for name in numeric + categorical:
            column = window.read_row_group(group, columns=[name]).column(0)
            values = _numbers(column) if name in numeric else column
            monitor.add_rows({name: Column(values)})
    monitor.statuses[200] = 1  # a window of rows without request records: judged all the same
    result = monitor.result()
    done = time.perf_counter()
    return {
        "seconds": done - imported,
        "profile_seconds": profiled - imported,
        "judge_seconds": done - profiled,
        "import_seconds": imported - began,
        "peak_rss_mib": _peak_rss_mib(),
        "import_peak_rss_mib": import_rss,
        "drifted": sorted(result.drifted),
        "scores": {r["column"]: [r["metric"], r["value"], r["threshold"]] for r in result.drift},
    }


def collection_worker(reference: Path, collected: Path) -> dict:
    """In a fresh process: judge the current rows as collected JSON lines (baseline given)."""
    began = time.perf_counter()
    import pyarrow.parquet as pq

    from nbmill.monitor.collected import chunks
    from nbmill.monitor.profile import Profile, profile_column
    from nbmill.monitor.verdict import Monitor

    numeric, categorical = drift_data.NUMERIC, drift_data.CATEGORICAL
    source = pq.ParquetFile(reference)
    features = {
        name: profile_column(
            _numbers(source.read(columns=[name]).column(0))
            if name in numeric
            else source.read(columns=[name]).column(0),
            categorical=name in categorical,
        )
        for name in numeric + categorical
    }
    profile = Profile(rows=source.metadata.num_rows, features=features)
    imported = time.perf_counter()
    monitor = Monitor(profile)
    kinds = {name: p.kind for name, p in features.items()}
    for chunk in chunks(collected, "bench", kinds):
        monitor.add_chunk(chunk)
    result = monitor.result()
    done = time.perf_counter()
    return {
        "seconds": done - imported,
        "import_seconds": imported - began,
        "peak_rss_mib": _peak_rss_mib(),
        "rows": result.window["rows"],
        "requests": result.window["requests"],
        "drifted": sorted(result.drifted),
    }


def make_collection(current: Path, folder: Path) -> Path:
    """The current rows as ``nbmill serve`` collects them (100 rows a request), made once."""
    done = folder / "done.json"
    if done.exists():
        return folder
    import numpy as np
    import pyarrow.parquet as pq

    from nbmill.serving.collect import Collector, Deployment, Scored

    table = pq.read_table(current)
    names = drift_data.NUMERIC + drift_data.CATEGORICAL
    where = Deployment("bench", "blue", tuple(names), "bench", "1", None, instance="i0")
    collector = Collector(folder, where, flush_s=3600)
    # Categories are written as the numbers of their text: the collector serialises float
    # matrices; the reader sees them as text of the feature's kind all the same.
    numeric = np.column_stack([table.column(n).to_numpy() for n in drift_data.NUMERIC])
    codes = {}
    for name in drift_data.CATEGORICAL:
        codes[name] = table.column(name).to_pylist()
    start = time.time() - 60
    for first in range(0, len(numeric), ROWS_PER_REQUEST):
        rows = slice(first, first + ROWS_PER_REQUEST)
        sent = [
            [*numeric[i].tolist(), *(codes[n][i] for n in drift_data.CATEGORICAL)]
            for i in range(rows.start, min(rows.stop, len(numeric)))
        ]
        collector.add(Scored(start, 200, 0.001, f"r{first}", sent=(names, sent)))
        if first % (ROWS_PER_REQUEST * 500) == 0:
            collector.flush()
    collector.close()
    done.write_text(json.dumps({"rows": len(numeric)}))
    return folder


def run_worker(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in each file")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each tool (median shown)")
    parser.add_argument("--no-evidently", action="store_true", help="nbmill only")
    parser.add_argument("--no-collection", action="store_true", help="skip the JSONL read")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        kind, *paths = args.worker
        if kind == "nbmill":
            result = nbmill_worker(Path(paths[0]), Path(paths[1]))
        else:
            result = collection_worker(Path(paths[0]), Path(paths[1]))
        print(json.dumps(result))
        return 0

    began = time.perf_counter()
    data = drift_data.make(DATA, rows=args.rows)
    print(f"data: {args.rows:,} rows x 12 features, reference and current "
          f"({time.perf_counter() - began:.1f}s); shifted: {', '.join(data.shifted)}")  # fmt: skip
    runs: dict[str, list[dict]] = {"nbmill": []}
    for _ in range(args.repeat):
        runs["nbmill"].append(run_worker("--worker", "nbmill", str(data.reference),
                                         str(data.current)))  # fmt: skip
    if not args.no_collection:
        folder = make_collection(data.current, DATA / f"collected-{args.rows}")
        runs["nbmill, from the collection"] = [
            run_worker("--worker", "collection", str(data.reference), str(folder))
            for _ in range(args.repeat)
        ]
    if not args.no_evidently:
        reason = drift_peer.ensure_evidently_venv(lambda line: print(line, flush=True))
        if reason:
            print(f"Evidently skipped: {reason}")
        else:
            runs["Evidently DataDriftPreset"] = [
                drift_peer.run_evidently(
                    data.reference, data.current, drift_data.NUMERIC, drift_data.CATEGORICAL
                )  # fmt: skip
                for _ in range(args.repeat)
            ]

    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    print()
    print("| tool | wall s | import s | peak RSS MiB | flags | same as shifted |")
    print("|---|---:|---:|---:|---|---|")
    summary = {}
    for name, results in runs.items():
        seconds = median([r["seconds"] for r in results])
        rss = median([r["peak_rss_mib"] for r in results])
        imports = median([r.get("import_seconds", float("nan")) for r in results])
        flags = results[0]["drifted"]
        same = sorted(flags) == sorted(data.shifted)
        summary[name] = (seconds, rss)
        print(f"| {name} | {seconds:.2f} | {imports:.2f} | {rss:,.0f} | {', '.join(flags)} | "
              f"{'yes' if same else 'NO'} |")  # fmt: skip
    if "Evidently DataDriftPreset" in summary:
        peer_s, peer_rss = summary["Evidently DataDriftPreset"]
        ours_s, ours_rss = summary["nbmill"]
        print(f"\nnbmill: {peer_s / ours_s:.1f}x faster than Evidently, "
              f"{ours_rss / peer_rss:.2f} of its peak memory")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
