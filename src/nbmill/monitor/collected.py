"""Reading collected scoring data (``nbmill.collection``'s layout, local or from Azure ML) for a
time window, file by file: bounded memory, vectorised with pyarrow.

Each file is parsed by pyarrow's JSON reader against the schema the baseline implies (numeric
features as float64, categorical as text). A file it cannot read that way (a value of the wrong
type, sent by a client and refused) is read line by line instead, and the values that are not of
their feature's type are counted as type errors, never dropped silently.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from nbmill import collection
from nbmill.errors import NbmillError

Kind = Literal["numeric", "categorical"]
READ_BLOCK = 4 << 20
OK = 400  # statuses below this were scored


@dataclass
class Column:
    """One feature's values in a chunk: floats (NaN missing) or text (None missing)."""

    values: Any
    type_errors: int = 0


@dataclass
class Chunk:
    """One file's requests in the window, and their rows, split by whether they were scored."""

    path: Path
    requests: pa.Table  # time, status, latencyms, modelversion, rows
    scored: dict[str, Column]
    refused: dict[str, Column]
    slow: bool = False  # read line by line (a value of the wrong type was in it)


def files(
    root: Path,
    endpoint: str,
    collection_name: str = collection.INPUTS,
    deployment: str = "*",
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[Path]:
    """The collected files of an endpoint (every deployment unless named) whose hour folder
    overlaps [since, until), oldest first."""
    base = Path(root) / endpoint
    if not base.is_dir():
        raise NbmillError(
            f"{base}: nothing collected for endpoint '{endpoint}' "
            f"(serve with collection on: nbmill serve MODEL --collect-dir {root})"
        )
    found = []
    for path in base.glob(f"{deployment}/{collection_name}/*/*/*/*/*.jsonl"):
        hour = collection.hour_of(path)
        if hour is None:
            continue
        if since is not None and hour + timedelta(hours=1) <= since:
            continue
        if until is not None and hour >= until:
            continue
        found.append((hour, str(path), path))
    return [path for _, _, path in sorted(found)]


def _schema(kinds: Mapping[str, Kind]) -> pa.Schema:
    row = pa.struct(
        [(name, pa.float64() if kind == "numeric" else pa.string()) for name, kind in kinds.items()]
    )
    return pa.schema(
        [
            ("time", pa.string()),
            ("status", pa.int64()),
            ("latencyms", pa.float64()),
            ("modelversion", pa.string()),
            ("data", pa.list_(row)),
        ]
    )


def read(
    path: Path,
    kinds: Mapping[str, Kind],
    since: datetime | None = None,
    until: datetime | None = None,
) -> Chunk:
    """One collected file's requests in [since, until) and their rows."""
    try:
        table = pj.read_json(
            path,
            read_options=pj.ReadOptions(block_size=READ_BLOCK),
            parse_options=pj.ParseOptions(
                explicit_schema=_schema(kinds), unexpected_field_behavior="ignore"
            ),
        )
        slow = False
    except pa.ArrowInvalid:
        table, slow = _read_lines(path, kinds), True
    table = _in_window(table, since, until)
    status = table["status"].fill_null(200)  # Azure ML keeps no status: what it kept was scored
    lengths = pc.list_value_length(table["data"]).fill_null(0)
    requests = pa.table(
        {
            "time": table["time"],
            "status": status,
            "latencyms": table["latencyms"],
            "modelversion": table["modelversion"],
            "rows": lengths,
        }
    )
    ok = pc.less(status, OK)
    return Chunk(
        path,
        requests,
        _columns(table.filter(ok), kinds, slow),
        _columns(table.filter(pc.invert(ok)), kinds, slow),
        slow,
    )


def _in_window(table: pa.Table, since: datetime | None, until: datetime | None) -> pa.Table:
    if since is None and until is None:
        return table
    moments = pc.cast(table["time"], pa.timestamp("us", tz="UTC"))
    mask = None
    if since is not None:
        mask = pc.greater_equal(moments, pa.scalar(since, pa.timestamp("us", tz="UTC")))
    if until is not None:
        before = pc.less(moments, pa.scalar(until, pa.timestamp("us", tz="UTC")))
        mask = before if mask is None else pc.and_(mask, before)
    return table.filter(mask)


def _columns(table: pa.Table, kinds: Mapping[str, Kind], slow: bool) -> dict[str, Column]:
    rows = pc.list_flatten(table["data"])
    if isinstance(rows, pa.ChunkedArray):
        rows = rows.combine_chunks() if rows.num_chunks else pa.array([], rows.type)
    columns = {}
    for name, kind in kinds.items():
        field = rows.field(name)
        if slow:  # text as sent: a value that is not of the feature's type is a type error
            columns[name] = _typed(field.to_pylist(), kind)
        elif kind == "numeric":
            columns[name] = Column(field.to_numpy(zero_copy_only=False).astype(float))
        else:
            columns[name] = Column(field)
    return columns


def _typed(values: list[Any], kind: Kind) -> Column:
    """Values as sent (JSON text of each) into the feature's type; the others counted."""
    parsed = [None if v is None else json.loads(v) for v in values]
    if kind == "numeric":
        good = [
            isinstance(v, int | float) and not isinstance(v, bool) for v in parsed
        ]  # a per-value loop, only in files a client's wrong types sent here
        array = np.array([float(v) if ok else np.nan for v, ok in zip(parsed, good, strict=True)])
        errors = sum(1 for v, ok in zip(parsed, good, strict=True) if v is not None and not ok)
        return Column(array, errors)
    good = [isinstance(v, str | int) and not isinstance(v, bool) for v in parsed]
    text = [str(v) if ok else None for v, ok in zip(parsed, good, strict=True)]
    errors = sum(1 for v, ok in zip(parsed, good, strict=True) if v is not None and not ok)
    return Column(pa.array(text, pa.string()), errors)


def _read_lines(path: Path, kinds: Mapping[str, Kind]) -> pa.Table:
    """A file pyarrow could not read against the schema: line by line, each value kept as its
    JSON text so that its type is judged per feature."""
    times, statuses, latencies, versions, data = [], [], [], [], []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line: nothing of it can be trusted
            if not isinstance(event, dict):
                continue
            rows = event.get("data") if isinstance(event.get("data"), list) else []
            times.append(str(event.get("time", "")))
            statuses.append(event.get("status") if isinstance(event.get("status"), int) else None)
            latency = event.get("latencyms")
            latencies.append(float(latency) if isinstance(latency, int | float) else None)
            versions.append(str(event["modelversion"]) if "modelversion" in event else None)
            data.append(
                [
                    {
                        k: None if not isinstance(r, dict) or r.get(k) is None else json.dumps(r[k])
                        for k in kinds
                    }
                    for r in rows
                ]
            )
    row = pa.struct([(name, pa.string()) for name in kinds])
    return pa.table(
        {
            "time": pa.array(times, pa.string()),
            "status": pa.array(statuses, pa.int64()),
            "latencyms": pa.array(latencies, pa.float64()),
            "modelversion": pa.array(versions, pa.string()),
            "data": pa.array(data, pa.list_(row)),
        }
    )


def chunks(
    root: Path,
    endpoint: str,
    kinds: Mapping[str, Kind],
    collection_name: str = collection.INPUTS,
    deployment: str = "*",
    since: datetime | None = None,
    until: datetime | None = None,
) -> Iterator[Chunk]:
    for path in files(root, endpoint, collection_name, deployment, since, until):
        yield read(path, kinds, since, until)
