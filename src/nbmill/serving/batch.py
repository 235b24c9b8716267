"""Batch scoring, as Azure ML batch endpoints score an MLflow model: ``nbmill score MODEL --input
FILE --output FILE``. The input (CSV or Parquet) is read in chunks; each chunk is checked
against the model's signature in this process and scored by a pool of processes forked after
the model was loaded (every core, one copy of the model). Predictions are written in input
order as the chunks come back, and each chunk is collected as one request in the data
collector's layout (``model_inputs``, ``model_outputs``, a correlation id per chunk), so the
monitor reads batch and online scoring alike.

A bad cell stops the run with an error naming its row (counted from 0, as the file's data rows)
and column, after every row before it was scored and written: nothing already scored is lost.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nbmill import collection
from nbmill.errors import NbmillError

CHUNK_ROWS = 50_000
_MODEL: Any = None  # set before the pool forks: each worker scores with the parent's copy


class ScoreError(NbmillError):
    """A row the model cannot take; the message names its row and column."""


@dataclass
class Scored:
    input: str
    output: str
    rows: int = 0
    chunks: int = 0
    seconds: float = 0.0
    workers: int = 1
    collected: str | None = None
    model: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        rate = self.rows / self.seconds if self.seconds else None
        return {**self.__dict__, "rows_per_s": round(rate) if rate else None}


def chunks(path: Path, rows: int) -> Iterator[pd.DataFrame]:
    """The input's rows, ``rows`` at a time (CSV or Parquet, by suffix)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
            yield batch.to_pandas()
    elif suffix == ".csv":
        # Cells as written: "n/a" or "NA" is a bad cell to name, not a silent NaN.
        yield from pd.read_csv(path, chunksize=rows, keep_default_na=False)
    else:
        raise NbmillError(f"{path}: not a .csv or .parquet file")


def matrix(frame: pd.DataFrame, columns: tuple[str, ...], start: int) -> tuple[np.ndarray, str]:
    """The chunk's rows in signature order as float64, and "" or the first bad cell's problem
    (the rows before it are still in the matrix's first ``bad_row - start`` rows)."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ScoreError(
            f"column '{missing[0]}' is missing (the model takes: {', '.join(columns)})"
        )
    values = frame[list(columns)]
    numbers = values.apply(pd.to_numeric, errors="coerce")
    bad = numbers.isna() | ~np.isfinite(numbers.to_numpy(dtype=float))
    if bad.to_numpy().any():
        row, col = map(int, np.argwhere(bad.to_numpy())[0])
        value = values.iat[row, col]
        empty = value is None or value == "" or (isinstance(value, float) and np.isnan(value))
        what = "is empty" if empty else f"{value!r} is not a finite number"
        problem = f"row {start + row}, column '{columns[col]}': {what}"
        return numbers.to_numpy(dtype=float)[:row], problem
    return numbers.to_numpy(dtype=float), ""


@dataclass
class _Chunk:
    """What a worker gives back for one chunk."""

    rows: np.ndarray | None  # the rows scored (only when they are collected)
    predictions: np.ndarray
    csv: str | None  # the output's lines for them, formatted here (CSV output)
    problem: str  # "" or the first bad cell (the rows before it are scored)


def _score(frame: pd.DataFrame, columns: tuple[str, ...], start: int, csv: bool,
           header: bool, keep_rows: bool) -> _Chunk:  # fmt: skip
    """In a worker: check the chunk, score the rows before its first bad cell (all of them, if
    none), and format the output's CSV lines, so the parent only reads and writes bytes."""
    rows, problem = matrix(frame, columns, start)
    predictions = np.asarray(_MODEL.predict(rows)) if len(rows) else np.empty(0)
    text = None
    if csv and len(rows):
        scored = frame.iloc[: len(rows)].copy()
        scored[collection.PREDICTION] = predictions
        text = scored.to_csv(index=False, header=header)
    return _Chunk(rows if keep_rows else None, predictions, text, problem)


class _Output:
    """Predictions written as they come: the input's columns and ``prediction``."""

    def __init__(self, path: Path):
        self.path = path
        self.suffix = path.suffix.lower()
        if self.suffix not in (".csv", ".parquet"):
            raise NbmillError(f"{path}: write a .csv or .parquet file")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._parquet = None
        self._first = True

    def write(self, frame: pd.DataFrame, chunk: _Chunk) -> None:
        if self.suffix == ".csv":
            with open(self.path, "w" if self._first else "a", encoding="utf-8") as handle:
                handle.write(chunk.csv or "")
        else:
            frame = frame.iloc[: len(chunk.predictions)].copy()
            frame[collection.PREDICTION] = chunk.predictions
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.path, table.schema)
            self._parquet.write_table(table)
        self._first = False

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        elif self._first:  # nothing scored: still a file, with its header
            self.path.write_text("")


def score_file(
    ref: str,
    project_dir: Path,
    source: Path,
    output: Path,
    collect_dir: Path | None = None,
    chunk_rows: int = CHUNK_ROWS,
    workers: int | None = None,
) -> Scored:
    """Score every row of ``source`` into ``output``; ScoreError at the first bad cell, after
    the rows before it were written."""
    global _MODEL
    from nbmill.serving.collect import Collector, Deployment
    from nbmill.serving.collect import Scored as Request
    from nbmill.serving.startup import _load, prepare

    if not Path(source).is_file():
        raise NbmillError(f"{source}: no such file")
    workers = max(1, workers or os.cpu_count() or 1)
    done = Scored(str(source), str(output), workers=workers)
    with prepare(ref, project_dir, collect_dir, deployment="batch") as config:
        _MODEL = _load(Path(config.model_dir), config)
        done.model = config.identity
        collector = where = None
        if collect_dir is not None:
            identity = config.identity
            where = Deployment(config.endpoint, config.deployment, tuple(config.columns),
                               model_name=identity.get("model"),
                               model_version=identity.get("version"),
                               model_alias=identity.get("alias"))  # fmt: skip
            done.collected = str(Path(collect_dir) / config.endpoint / config.deployment)
        job = uuid.uuid4().hex[:12]
        out = _Output(Path(output))
        began = time.perf_counter()
        pending: deque[tuple[pd.DataFrame, Future, float]] = deque()
        columns, csv = tuple(config.columns), out.suffix == ".csv"

        def finish_one() -> None:
            nonlocal collector
            frame, future, at = pending.popleft()
            chunk: _Chunk = future.result()
            if len(chunk.predictions):
                out.write(frame, chunk)
                if where is not None and collector is None:
                    # Started once the pool has forked its workers (at its first task), so
                    # that none of them holds the writer's pipe open.
                    collector = Collector(Path(collect_dir), where)
                if collector is not None:
                    request_id = f"batch-{job}-{done.chunks:06d}"
                    collector.add(Request(at, 200, 0.0, request_id, matrix=chunk.rows,
                                          predictions=chunk.predictions))  # fmt: skip
                done.rows += len(chunk.predictions)
                done.chunks += 1
            if chunk.problem:
                raise ScoreError(f"{source}: {chunk.problem}; the {done.rows} rows before it "
                                 f"were scored and written to {output}")  # fmt: skip

        pool = ProcessPoolExecutor(workers, mp_context=get_context("fork"))
        try:
            start = 0
            for frame in chunks(Path(source), chunk_rows):
                header = start == 0
                future = pool.submit(_score, frame, columns, start, csv, header,
                                     where is not None)  # fmt: skip
                pending.append((frame, future, time.time()))
                while len(pending) > 2 * workers:
                    finish_one()
                start += len(frame)
            while pending:
                finish_one()
        finally:
            pool.shutdown(cancel_futures=True)
            out.close()
            if collector is not None:
                collector.close()
            done.seconds = time.perf_counter() - began
            _MODEL = None
    return done
