"""Data collection for monitoring: every scored request's inputs, outputs, latency and status.

The hot path only appends a tuple to a list; a background thread turns the list into JSON lines
every second, in files rotated by size and by hour: ``<dir>/<YYYYMMDDTHH>-<prefix>-<n>.jsonl``.
``close`` writes what is left, so nothing is lost on shutdown.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nbmill._time import iso_from_timestamp

FLUSH_S = 1.0
MAX_FILE_BYTES = 16 << 20
MAX_PENDING = 100_000  # items waiting for the writer; past this they are dropped and counted


def _one_line(body: bytes) -> bytes:
    # Valid JSON has newlines only between tokens, where a space means the same.
    return body.replace(b"\r", b" ").replace(b"\n", b" ")


class Collector:
    def __init__(
        self,
        folder: Path,
        prefix: str = "collect",
        max_bytes: int = MAX_FILE_BYTES,
        flush_s: float = FLUSH_S,
        max_pending: int = MAX_PENDING,
    ):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.max_bytes = max_bytes
        self.flush_s = flush_s
        self._items: list[tuple[float, int, float, bytes, bytes]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._file: tuple[str, int, Path] | None = None  # (hour, part, path)
        self.max_pending = max_pending
        self.written = 0
        self.errors = 0  # items that could not be written (each reason is logged once)
        self.dropped = 0  # items refused because the writer fell behind
        self._reasons: set[str] = set()
        self.on_error: Callable[[int], Any] = lambda count: None  # e.g. a Prometheus counter
        self.on_drop: Callable[[int], Any] = lambda count: None
        self._thread = threading.Thread(target=self._run, name="nbmill-collect", daemon=True)
        self._thread.start()

    def add(
        self,
        status: int,
        seconds: float,
        request: bytes,
        response: bytes,
        at: float | None = None,
    ) -> None:
        """Queue one scored request (``at``: when, POSIX seconds; now by default)."""
        item = (time.time() if at is None else at, status, seconds, request, response)
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
        """Count items that could not be written; say why once per reason, and go on."""
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
        lines, first = [], None
        for item in items:
            try:
                lines.append(_line(*item))
            except Exception as exc:  # one bad item costs only itself
                self._failed(1, exc)
                continue
            first = first if first is not None else item[0]
        if not lines:
            return
        try:
            self._write(b"".join(lines), datetime.fromtimestamp(first, UTC))
        except OSError as exc:  # a full or missing disk: counted, and the writer goes on
            self._failed(len(lines), exc)
            return
        self.written += len(lines)

    def _write(self, data: bytes, moment: datetime) -> None:
        hour = moment.strftime("%Y%m%dT%H")
        if self._file is None or self._file[0] != hour:
            self._file = (hour, 0, self._path(hour, 0))
        hour, part, path = self._file
        if path.exists() and path.stat().st_size + len(data) > self.max_bytes:
            self._file = (hour, part + 1, self._path(hour, part + 1))
            path = self._file[2]
        with open(path, "ab") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())

    def _path(self, hour: str, part: int) -> Path:
        return self.folder / f"{hour}-{self.prefix}-{part:04d}.jsonl"

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.flush()


def _line(moment: float, status: int, seconds: float, request: bytes, response: bytes) -> bytes:
    """One collected record as a JSON line (the bodies are JSON already, and kept as they are)."""
    request_json = _one_line(request) if status < 400 or _is_json(request) else b"null"
    return (
        b'{"time":"'
        + iso_from_timestamp(moment).encode()
        + b'","status":'
        + str(status).encode()
        + b',"latency_ms":'
        + f"{seconds * 1000:.3f}".encode()
        + b',"request":'
        + (request_json or b"null")
        + b',"response":'
        + _one_line(response or b"null")
        + b"}\n"
    )


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
    return bool(body.strip())


def read_collected(folder: Path) -> list[dict]:
    """Every collected record, oldest file first."""
    records = []
    for path in sorted(Path(folder).glob("*.jsonl")):
        with open(path, encoding="utf-8") as handle:
            records += [json.loads(line) for line in handle if line.strip()]
    return records
