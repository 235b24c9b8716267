"""Data collection for monitoring: every scored request's inputs, outputs, latency and status.

The hot path only appends a tuple to a list; a background thread turns the list into JSON lines
every second, in files rotated by size and by hour: ``<dir>/<YYYYMMDDTHH>-<prefix>-<n>.jsonl``.
``close`` writes what is left, so nothing is lost on shutdown.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from nbmill._time import iso_from_timestamp

FLUSH_S = 1.0
MAX_FILE_BYTES = 16 << 20


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
        self.written = 0
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
            self._items.append(item)

    def _run(self) -> None:
        while not self._stop.wait(self.flush_s):
            self.flush()

    def flush(self) -> None:
        with self._lock:
            items, self._items = self._items, []
        if not items:
            return
        lines = []
        for moment, status, seconds, request, response in items:
            stamp = iso_from_timestamp(moment)
            request_json = _one_line(request) if status < 400 or _is_json(request) else b"null"
            lines.append(
                b'{"time":"'
                + stamp.encode()
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
        self._write(b"".join(lines), datetime.fromtimestamp(items[0][0], UTC))
        self.written += len(items)

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


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return False
    return bool(body.strip())


def read_collected(folder: Path) -> list[dict]:
    """Every collected record, oldest file first."""
    records = []
    for path in sorted(Path(folder).glob("*.jsonl")):
        with open(path, encoding="utf-8") as handle:
            records += [json.loads(line) for line in handle if line.strip()]
    return records
