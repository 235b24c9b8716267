"""Data collection for monitoring: every scored request's rows, predictions, status and latency,
in the layout of Azure ML's data collector (``nbmill.collection``).

The hot path only appends a tuple (the parsed matrix, the predictions, the status...) to a
list; a background thread turns the list into JSON lines every ``flush_s``, one file per
collection, instance and hour, rotated by size (``<instance>.jsonl``, ``<instance>_0001.jsonl``).
``close`` writes what is left, so nothing is lost on shutdown. A record that cannot be written
is counted and its reason logged once; the buffer is bounded, and what arrives beyond it is
dropped and counted.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import sys
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from nbmill import collection
from nbmill._time import iso_from_timestamp

FLUSH_S = 0.25
MAX_FILE_BYTES = 16 << 20
MAX_PENDING = 100_000  # items waiting for the writer; past this they are dropped and counted
AGENT = "nbmill-serve"
NUMPY = orjson.OPT_SERIALIZE_NUMPY


@dataclass(frozen=True)
class Scored:
    """One request, as the hot path hands it over: nothing serialised yet."""

    at: float  # POSIX seconds
    status: int
    seconds: float
    correlation_id: str
    matrix: np.ndarray | None = None  # the rows scored, in signature order
    predictions: np.ndarray | None = None
    # Why it was refused, or the model's exception when scoring failed: the client is told
    # only its request id, but the collection, like the server's log, is the operator's.
    error: str | None = None
    sent: tuple[list[str], list[Any]] | None = None  # a refused request's columns and rows


@dataclass(frozen=True)
class Deployment:
    """Where and what: the endpoint, deployment and instance, and the model it serves."""

    endpoint: str
    deployment: str
    columns: tuple[str, ...]
    model_name: str | None = None
    model_version: str | None = None
    model_alias: str | None = None
    instance: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")

    @property
    def source(self) -> str:
        return f"/nbmill/endpoints/{self.endpoint}/deployments/{self.deployment}"


class Collector:
    def __init__(
        self,
        root: Path,
        deployment: Deployment,
        max_bytes: int = MAX_FILE_BYTES,
        flush_s: float = FLUSH_S,
        max_pending: int = MAX_PENDING,
    ):
        self.root = Path(root)
        self.deployment = deployment
        self.max_bytes = max_bytes
        self.flush_s = flush_s
        self.max_pending = max_pending
        self._items: list[Scored] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._parts: dict[tuple[str, str], int] = {}  # (collection, hour folder) -> part
        self._folders: dict[tuple[str, int], Path] = {}  # (collection, hour) -> its folder
        self._made: set[Path] = set()
        self._ids = itertools.count()
        self._id_prefix = uuid.uuid4().hex[:20]
        self.written = 0  # requests written
        self.errors = 0  # requests that could not be written (each reason is logged once)
        self.dropped = 0  # requests refused because the writer fell behind
        self._reasons: set[str] = set()
        self.on_error: Callable[[int], Any] = lambda count: None  # e.g. a Prometheus counter
        self.on_drop: Callable[[int], Any] = lambda count: None
        self._rows = _RecordWriter(deployment.columns)
        self._predictions = _RecordWriter((collection.PREDICTION,))
        self._head = _head_fields(deployment)
        self._thread = threading.Thread(target=self._run, name="nbmill-collect", daemon=True)
        self._thread.start()

    def add(self, item: Scored) -> None:
        """Queue one scored request (the hot path: an append under a lock)."""
        with self._lock:
            if len(self._items) >= self.max_pending:
                self.dropped += 1
                self.on_drop(1)
                return
            self._items.append(item)

    def _run(self) -> None:
        while not self._stop.wait(self.flush_s):
            self.flush()

    def _failed(self, count: int, exc: BaseException) -> None:
        """Count requests that could not be written; say why once per reason, and go on."""
        self.errors += count
        self.on_error(count)
        reason = f"{type(exc).__name__}: {exc}"[:200]
        if reason not in self._reasons:
            self._reasons.add(reason)
            print(f"warning: collection: {count} record(s) not written ({reason})", file=sys.stderr)

    def flush(self) -> None:
        """Write what is buffered. A record that cannot be written is counted, never fatal."""
        with self._lock:
            items, self._items = self._items, []
        if not items:
            return
        batches: dict[tuple[str, Path], list[bytes]] = {}
        done = 0
        for item in items:
            try:
                lines = self._lines(item)
            except Exception as exc:  # one bad item costs only itself
                self._failed(1, exc)
                continue
            hour = int(item.at // 3600)
            for name, line in lines:
                folder = self._folders.get((name, hour)) or self._folder(name, hour)
                batches.setdefault((name, folder), []).append(line)
            done += 1
        try:
            for (name, folder), lines in batches.items():
                self._write(name, folder, b"".join(lines))
        except OSError as exc:  # a full or missing disk: counted, and the writer goes on
            self._failed(done, exc)
            return
        self.written += done

    def _folder(self, name: str, hour: int) -> Path:
        at = datetime.fromtimestamp(hour * 3600, UTC)
        where = self.deployment
        folder = collection.hour_folder(self.root, where.endpoint, where.deployment, name, at)
        if len(self._folders) > 256:
            self._folders.clear()
        self._folders[(name, hour)] = folder
        return folder

    def _lines(self, item: Scored) -> list[tuple[str, bytes]]:
        """The request's model_inputs line, and its model_outputs line when it was scored."""
        moment = iso_from_timestamp(item.at)
        if item.matrix is not None:
            rows = self._rows.records(item.matrix)
        elif item.sent is not None:
            rows = _sent_records(*item.sent)
        else:
            rows = b"[]"
        extra = (
            f',"status":{item.status},"latencyms":{item.seconds * 1000:.3f}'
            + (f',"error":{json.dumps(item.error)}' if item.error else "")
        ).encode()
        lines = [(collection.INPUTS, self._line(collection.INPUTS, moment, item, rows, extra))]
        if item.predictions is not None:
            outputs = self._predictions.records(item.predictions.reshape(len(item.predictions), -1))
            lines.append(
                (collection.OUTPUTS, self._line(collection.OUTPUTS, moment, item, outputs, b""))
            )
        return lines

    def _line(self, name: str, moment: str, item: Scored, data: bytes, extra: bytes) -> bytes:
        cid = item.correlation_id.encode()
        return (
            b'{"specversion":"1.0","id":"'
            + self._event_id()
            + self._head[name]
            + b',"time":"'
            + moment.encode()
            + b'","data":'
            + data
            + b',"correlationid":"'
            + cid
            + b'","xrequestid":"'
            + cid
            + b'"'
            + self._head["tail"]
            + f',"contentrange":"bytes 0-{len(data) - 1}/{len(data)}"'.encode()
            + extra
            + b"}\n"
        )

    def _event_id(self) -> bytes:
        """Unique per line: this collector's random prefix and a counter, shaped as a UUID."""
        n = f"{self._id_prefix}{next(self._ids):012x}"
        return f"{n[:8]}-{n[8:12]}-{n[12:16]}-{n[16:20]}-{n[20:32]}".encode()

    def _write(self, name: str, folder: Path, data: bytes) -> None:
        key = (name, str(folder))
        part = self._parts.get(key, 0)
        path = self._path(folder, part)
        if path.exists() and path.stat().st_size + len(data) > self.max_bytes:
            part += 1
            path = self._path(folder, part)
        self._parts[key] = part
        if folder not in self._made:
            folder.mkdir(parents=True, exist_ok=True)
            self._made.add(folder)
        try:
            handle = open(path, "ab")
        except FileNotFoundError:  # the folder was removed meanwhile: made again
            folder.mkdir(parents=True, exist_ok=True)
            handle = open(path, "ab")
        with handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    def _path(self, folder: Path, part: int) -> Path:
        suffix = f"_{part:04d}" if part else ""  # sorts after the first
        return folder / f"{self.deployment.instance}{suffix}.jsonl"

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.flush()


def _head_fields(deployment: Deployment) -> dict[str, bytes]:
    """The constant parts of every line, serialised once."""
    head = {
        name: (
            '","source":'
            + json.dumps(deployment.source)
            + ',"type":'
            + json.dumps(collection.EVENT_TYPE.format(collection=name))
            + ',"datacontenttype":"application/json"'
        ).encode()
        for name in collection.COLLECTIONS
    }
    tail = {
        "modelversion": deployment.model_version or "default",
        "collectdatatype": "pandas.core.frame.DataFrame",
        "agent": AGENT,
        "modelname": deployment.model_name,
        "modelalias": deployment.model_alias,
    }
    head["tail"] = b"," + json.dumps(tail, separators=(",", ":")).encode()[1:-1]
    return head


class _RecordWriter:
    """A float matrix as JSON records (``[{"a":1.0,"b":2.0},...]``): orjson writes the numbers
    (shortest round-trip form, NaN as null) and one ``%`` puts them in a template of the
    records; no Python loop over rows or values."""

    def __init__(self, columns: Sequence[str]):
        self.row = b"{" + b",".join(json.dumps(c).encode() + b":%s" for c in columns) + b"}"
        self.width = len(columns)
        self._formats: dict[int, bytes] = {}

    def records(self, matrix: np.ndarray) -> bytes:
        rows = len(matrix)
        if matrix.ndim != 2 or matrix.shape[1] != self.width:
            raise ValueError(f"expected {self.width} columns, got shape {matrix.shape}")
        template = self._formats.get(rows)
        if template is None:
            template = b"[" + b",".join([self.row] * rows) + b"]"
            if len(self._formats) < 64:
                self._formats[rows] = template
        text = orjson.dumps(np.ascontiguousarray(matrix, dtype=np.float64), option=NUMPY)
        return template % tuple(text[2:-2].replace(b"],[", b",").split(b","))


def _sent_records(columns: list[str], rows: list[Any]) -> bytes:
    """A refused request's rows as sent (values of any type), as records, when they are rows."""
    records = [
        dict(zip(columns, row, strict=False)) if isinstance(row, list) else {"row": row}
        for row in rows
    ]
    try:
        return json.dumps(records, separators=(",", ":"), allow_nan=False, default=repr).encode()
    except ValueError:  # NaN or infinity, which JSON has not: sent, but missing
        clean = [{k: _finite(v) for k, v in r.items()} for r in records]
        return json.dumps(clean, separators=(",", ":"), default=repr).encode()


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not np.isfinite(value) else value
