"""The collection writer: a process of its own that turns scored requests into JSON lines in
Azure ML's data collector layout (``nbmill.collection``), so that formatting thousands of numbers
as text never holds the serving process's GIL.

The serving process (``collect.Collector``) sends columnar frames on this process's stdin: one
matrix of every request's rows, one of their predictions, and a small tuple per request. Each
frame is written (one file per collection, instance and hour, rotated by size:
``<instance>.jsonl``, ``<instance>_0001.jsonl``) and fsynced, then acknowledged on stdout with
what was written and what could not be, and why. A request that cannot be written costs only
itself. The process ends when its stdin does, after writing everything sent: signals meant for
the server's process group (Ctrl-C, a service manager's SIGTERM) do not reach it, and a server
killed outright still leaves what it had sent written.

    python -m nbmill.serving.collect_writer     (started by Collector; not a user command)
"""

from __future__ import annotations

import itertools
import json
import os
import pickle
import signal
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import orjson

from nbmill import collection
from nbmill._time import iso_from_timestamp
from nbmill.serving.collect import AGENT, LENGTH, Deployment, Scored, reason, unpack

NUMPY = orjson.OPT_SERIALIZE_NUMPY


class LineWriter:
    """Writes scored requests as collection lines; counts what it could not write, and why."""

    def __init__(self, root: Path, deployment: Deployment, max_bytes: int):
        self.root = Path(root)
        self.deployment = deployment
        self.max_bytes = max_bytes
        self._parts: dict[tuple[str, str], int] = {}  # (collection, hour folder) -> part
        self._folders: dict[tuple[str, int], Path] = {}  # (collection, hour) -> its folder
        self._made: set[Path] = set()
        self._ids = itertools.count()
        self._id_prefix = uuid.uuid4().hex[:20]
        self._rows = _RecordWriter(deployment.columns)
        self._predictions = _RecordWriter((collection.PREDICTION,))
        self._head = _head_fields(deployment)
        self._tails: dict[str, bytes] = {}  # by the version that answered

    def write(self, items: Sequence[Scored]) -> tuple[int, list[tuple[int, str]]]:
        """Write ``items``: (requests written, [(requests not written, why), ...])."""
        batches: dict[tuple[str, Path], list[bytes]] = {}
        failed: list[tuple[int, str]] = []
        done = 0
        for item in items:
            try:
                lines = self._lines(item)
            except Exception as exc:  # one bad item costs only itself
                failed.append((1, reason(exc)))
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
            return 0, [*failed, (done, reason(exc))]
        return done, failed

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
            + self._tail(item.version)
            + f',"contentrange":"bytes 0-{len(data) - 1}/{len(data)}"'.encode()
            + extra
            + b"}\n"
        )

    def _tail(self, version: str | None) -> bytes:
        """The fields naming the model: the version that answered, else the deployment's."""
        if version is None:
            return self._head["tail"]
        tail = self._tails.get(version)
        if tail is None:
            tail = self._tails[version] = _tail_fields(
                replace(self.deployment, model_version=version)
            )
        return tail

    def _event_id(self) -> bytes:
        """Unique per line: this writer's random prefix and a counter, shaped as a UUID."""
        n = f"{self._id_prefix}{next(self._ids):012x}"
        return f"{n[:8]}-{n[8:12]}-{n[12:16]}-{n[16:20]}-{n[20:32]}".encode()

    def _write(self, name: str, folder: Path, data: bytes) -> None:
        key = (name, str(folder))
        part = self._parts.get(key)
        if part is None:  # the first write here: after the parts a writer before wrote
            part = 0
            while self._path(folder, part + 1).exists():
                part += 1
        path = self._path(folder, part)
        if path.exists() and path.stat().st_size + len(data) > self.max_bytes:
            part += 1
            path = self._path(folder, part)
        if folder not in self._made:
            folder.mkdir(parents=True, exist_ok=True)
            self._made.add(folder)
        try:
            handle = open(path, "ab")
        except FileNotFoundError:  # the folder was removed meanwhile: made again
            folder.mkdir(parents=True, exist_ok=True)
            handle = open(path, "ab")
        with handle:
            if self._parts.get(key) != part:  # a file new to this writer: end on a whole line
                _cut_to_whole_lines(handle)
            self._parts[key] = part
            start = handle.tell()
            try:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            except OSError:  # a full disk, say: no line left half-written
                handle.truncate(start)
                raise

    def _path(self, folder: Path, part: int) -> Path:
        suffix = f"_{part:04d}" if part else ""  # sorts after the first
        return folder / f"{self.deployment.instance}{suffix}.jsonl"


def _cut_to_whole_lines(handle: BinaryIO) -> None:
    """Drop a last line left half-written (a writer killed mid-write; its request was counted
    as not written), so that every line of the file reads as JSON."""
    size = end = handle.seek(0, os.SEEK_END)
    with open(handle.name, "rb") as reader:
        while end > 0:  # back from the end, a block at a time, to the last newline
            start = max(0, end - (1 << 16))
            reader.seek(start)
            block = reader.read(end - start)
            cut = block.rfind(b"\n")
            if cut >= 0:
                end = start + cut + 1
                break
            end = start
    if end != size:
        handle.truncate(end)
        handle.seek(0, os.SEEK_END)


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
    head["tail"] = _tail_fields(deployment)
    return head


def _tail_fields(deployment: Deployment) -> bytes:
    tail = {
        "modelversion": deployment.model_version or "default",
        "collectdatatype": "pandas.core.frame.DataFrame",
        "agent": AGENT,
        "modelname": deployment.model_name,
        "modelalias": deployment.model_alias,
    }
    return b"," + json.dumps(tail, separators=(",", ":")).encode()[1:-1]


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


def frames(stream: BinaryIO) -> Iterator[Any]:
    """The unpickled frames on ``stream`` until it ends (a frame cut short ends it too)."""
    while True:
        head = stream.read(LENGTH.size)
        if len(head) < LENGTH.size:
            return
        (length,) = LENGTH.unpack(head)
        body = stream.read(length)
        if len(body) < length:
            return
        yield pickle.loads(body)


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # stdin's end is the only way to stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stream, answer = sys.stdin.buffer, sys.stdout
    received = frames(stream)
    setup = next(received, None)
    if setup is None:
        return 0
    writer = LineWriter(Path(setup["root"]), Deployment(**setup["deployment"]), setup["max_bytes"])
    for seq, packed in received:
        try:
            items, failed = unpack(packed), []
        except Exception as exc:  # a frame that cannot be read: every request in it counted
            items, failed = [], [(len(packed[0]), reason(exc))]
        written, not_written = writer.write(items)
        failed += not_written
        try:
            answer.write(json.dumps({"seq": seq, "written": written, "failed": failed}) + "\n")
            answer.flush()
        except (BrokenPipeError, ValueError):  # the server is gone: write the rest all the same
            answer = open(os.devnull, "w")  # noqa: SIM115 - until the process ends
    return 0


if __name__ == "__main__":
    sys.exit(main())
