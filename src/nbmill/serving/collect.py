"""Data collection for monitoring: every scored request's rows, predictions, status and latency,
in the layout of Azure ML's data collector (``nbmill.collection``).

The hot path only appends the request (its parsed matrix, predictions, status...) to a list.
Every ``flush_s`` a background thread packs the list into one columnar frame (every request's
rows in one matrix, their predictions in another, a small tuple each) and sends it down a pipe
to the collection writer, a process of its own (``collect_writer``) that formats the JSON lines
and writes them; the serving process never spends its GIL on text. ``close`` sends what is left
and waits for the writer to finish, so nothing is lost on shutdown. A request that cannot be
written is counted and its reason logged once; the buffer is bounded, and what arrives while it
is full (the writer fell behind) is dropped and counted.
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FLUSH_S = 0.25
MAX_FILE_BYTES = 16 << 20
MAX_PENDING = 100_000  # items waiting for the writer; past this they are dropped and counted
AGENT = "nbmill-serve"
WRITER = "nbmill.serving.collect_writer"
CLOSE_S = 60.0  # how long close() waits for the writer to write what it was sent
QUICK_DEATH_S = 5.0  # a writer that ends sooner than this is started again only after a wait
RESTART_MAX_S = 30.0  # the longest wait
LENGTH = struct.Struct("<Q")  # a frame on the writer's stdin: its length, then a pickle


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
    version: str | None = None  # the model version that answered (else the deployment's)


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


class _Writer:
    """One collection writer process, and the frames sent to it it has not answered for."""

    def __init__(self, process: subprocess.Popen):
        self.process = process
        self.waiting: dict[int, int] = {}  # frame number -> requests in it
        self.ended = False  # its answers ended: it exited (or was killed)
        self.started = self.ended_at = time.monotonic()
        self.answers: threading.Thread | None = None


class Collector:
    """The serving side of collection: a bounded buffer, and a thread that ships it to the
    writer process in columnar frames. ``written``, ``errors`` and ``dropped`` count requests.

    A writer that dies costs the requests it was sent and had not written, counted as errors;
    the next frame starts a new one."""

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
        self._lock = threading.Lock()  # the buffer
        self._send_lock = threading.Lock()  # the pipe, and which writer is current
        self._acked = threading.Condition()  # the counts, and each writer's frames waiting
        self._seq = 0  # frames sent
        self._stop = threading.Event()
        self._closed = self._final = False
        self.written = 0  # requests written
        self.errors = 0  # requests that could not be written (each reason is logged once)
        self.dropped = 0  # requests refused because the writer fell behind
        self._reasons: set[str] = set()
        self.on_error: Callable[[int], Any] = lambda count: None  # e.g. a Prometheus counter
        self.on_drop: Callable[[int], Any] = lambda count: None
        self._restart_delay = 0.0  # before a writer is started anew (see _restart)
        self._writer = self._start_writer()
        self._thread = threading.Thread(target=self._run, name="nbmill-collect", daemon=True)
        self._thread.start()

    def add(self, item: Scored) -> None:
        """Queue one scored request (the hot path: an append under a lock)."""
        with self._lock:
            if len(self._items) >= self.max_pending or self._closed:
                self.dropped += 1
                self.on_drop(1)
                return
            self._items.append(item)

    def flush(self, timeout: float = CLOSE_S) -> None:
        """Send what is buffered and wait (up to ``timeout``) until the writer has written it."""
        seq, writer = self._send()
        with self._acked:
            self._acked.wait_for(
                lambda: writer.ended or all(s > seq for s in writer.waiting), timeout
            )

    def close(self) -> None:
        """Send what is left, then wait for the writer to write it all and end: CLOSE_S at
        most, after which a writer that hangs (a stuck disk) is killed, and what it had not
        written is counted."""
        if self._closed:
            return
        self._closed = True  # adds are refused (and counted) from now on
        watchdog = threading.Timer(CLOSE_S, lambda: self._writer.process.kill())
        watchdog.daemon = True
        watchdog.start()
        try:
            self._stop.set()
            self._thread.join()
            self._send()  # to a new writer if this one died: the last frame is written too
            with self._send_lock:
                self._final = True  # no writer is started from now on
                writer = self._writer
                try:
                    writer.process.stdin.close()
                except OSError:
                    pass
                writer.process.wait()
            writer.answers.join()
        finally:
            watchdog.cancel()

    @property
    def writer_pid(self) -> int:
        """The collection writer's process id (a new one if the writer had to be restarted)."""
        return self._writer.process.pid

    def _start_writer(self) -> _Writer:
        # A session of its own: the signals sent to the server's process group do not stop
        # it; it stops when its stdin ends, after writing everything it was sent.
        process = subprocess.Popen(
            [sys.executable, "-m", WRITER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        writer = _Writer(process)
        writer.answers = threading.Thread(
            target=self._read_answers, args=(writer,), name="nbmill-collect-acks", daemon=True
        )
        writer.answers.start()
        setup = {"root": str(self.root), "deployment": asdict(self.deployment)}
        try:
            _send_frame(process, {**setup, "max_bytes": self.max_bytes})
        except (OSError, ValueError):
            pass  # it died at once: its answers end, and the next frame starts another
        return writer

    def _restart(self) -> None:
        """A new writer for the one that ended: at once, unless the last ones each died
        quickly (one that cannot start); then after a wait that doubles each time, up to
        RESTART_MAX_S. Frames meanwhile go to the ended writer: lost, and counted."""
        ended = self._writer
        if ended.ended_at - ended.started >= QUICK_DEATH_S:  # it had worked
            self._restart_delay = 0.0
        if time.monotonic() >= ended.ended_at + self._restart_delay:
            self._writer = self._start_writer()
            self._restart_delay = min(RESTART_MAX_S, self._restart_delay * 2 or 0.5)

    def _run(self) -> None:
        while not self._stop.wait(self.flush_s):
            self._send()

    def _send(self) -> tuple[int, _Writer]:
        """Ship the buffer as one frame: its number (the last one's if nothing was new), and
        the writer it went to."""
        with self._send_lock:  # taken first: a flush waits for a frame being sent to go
            with self._lock:
                items, self._items = self._items, []
            if self._writer.ended and not self._final:
                self._restart()
            writer = self._writer
            if not items:
                return self._seq, writer
            try:
                packed, refused = pack(items, len(self.deployment.columns))
            except Exception as exc:  # never expected; the requests are lost, and counted
                self._failed(len(items), reason(exc))
                return self._seq, writer
            for count, why in refused:
                self._failed(count, why)
            if not packed[0]:
                return self._seq, writer
            self._seq += 1
            with self._acked:
                writer.waiting[self._seq] = len(packed[0])
            try:
                _send_frame(writer.process, (self._seq, packed))
            except (OSError, ValueError):  # it died: its answers end, and count the frame
                pass
            with self._acked:  # it had ended before the frame was counted as waiting
                lost = writer.waiting.pop(self._seq, 0) if writer.ended else 0
            self._failed(lost, _stopped(writer))
            return self._seq, writer

    def _read_answers(self, writer: _Writer) -> None:
        try:
            for line in writer.process.stdout:
                try:
                    answer = json.loads(line)
                    seq, written, failed = answer["seq"], answer["written"], answer["failed"]
                except (ValueError, KeyError, TypeError):
                    continue  # not an answer: the frames it would name are counted at the end
                for count, why in failed:
                    self._failed(count, why)
                with self._acked:
                    self.written += written
                    writer.waiting.pop(seq, None)
                    self._acked.notify_all()
            writer.process.wait(CLOSE_S)
        except Exception as exc:  # the writer is taken for ended; it is killed, counted below
            print(f"warning: collection: reading the writer's answers: {exc}", file=sys.stderr)
            writer.process.kill()
        finally:
            self._ended(writer)

    def _ended(self, writer: _Writer) -> None:
        """The writer's answers ended: what it was sent and did not write is lost, counted."""
        with self._acked:
            writer.ended, writer.ended_at = True, time.monotonic()
            lost = sum(writer.waiting.values())
            writer.waiting.clear()
            self._acked.notify_all()
        self._failed(lost, _stopped(writer))

    def _failed(self, count: int, why: str) -> None:
        """Count requests that could not be written; say why once per reason, and go on."""
        if count <= 0:
            return
        with self._acked:  # from the sending thread and the answering one
            self.errors += count
            self.on_error(count)
            new = why not in self._reasons
            self._reasons.add(why)
        if new:
            print(f"warning: collection: {count} record(s) not written ({why})", file=sys.stderr)


Packed = tuple[list[tuple], np.ndarray | None, np.ndarray | None]


def pack(items: Sequence[Scored], width: int) -> tuple[Packed, list[tuple[int, str]]]:
    """Requests as one columnar frame: a tuple each (time, status, seconds, correlation id,
    error, rows as sent, how many rows it scored, how many predictions, version), every row in
    one matrix and every prediction in another. A request whose arrays do not fit is left out
    and counted: ((meta, rows, predictions), [(1, why), ...])."""
    meta: list[tuple] = []
    matrices: list[np.ndarray] = []
    predictions: list[np.ndarray] = []
    refused: list[tuple[int, str]] = []
    wide = None  # columns of the predictions
    for item in items:
        rows = scored = -1
        if item.matrix is not None:
            if item.matrix.ndim != 2 or item.matrix.shape[1] != width:
                shape = item.matrix.shape
                refused.append((1, f"ValueError: expected {width} columns, got shape {shape}"))
                continue
            rows = len(item.matrix)
            matrices.append(item.matrix)
        if item.predictions is not None:
            values = item.predictions.reshape(len(item.predictions), -1)
            if wide is not None and values.shape[1] != wide:
                refused.append((1, f"ValueError: expected {wide} predictions a row"))
                if rows >= 0:
                    matrices.pop()
                continue
            wide, scored = values.shape[1], len(values)
            predictions.append(values)
        meta.append((item.at, item.status, item.seconds, item.correlation_id, item.error,
                     item.sent, rows, scored, item.version))  # fmt: skip
    rows_all = np.concatenate(matrices) if matrices else None
    predictions_all = np.concatenate(predictions) if predictions else None
    return (meta, rows_all, predictions_all), refused


def unpack(packed: Packed) -> list[Scored]:
    """The requests of a frame ``pack`` made, their arrays views of the frame's."""
    meta, matrix, predictions = packed
    items, row, scored = [], 0, 0
    for at, status, seconds, correlation_id, error, sent, rows, count, version in meta:
        item_rows = item_predictions = None
        if rows >= 0:
            item_rows, row = matrix[row : row + rows], row + rows
        if count >= 0:
            item_predictions, scored = predictions[scored : scored + count], scored + count
        items.append(
            Scored(at, status, seconds, correlation_id, item_rows, item_predictions, error, sent,
                   version)
        )  # fmt: skip
    return items


def _send_frame(writer: subprocess.Popen, value: Any) -> None:
    data = pickle.dumps(value, protocol=5)
    writer.stdin.write(LENGTH.pack(len(data)) + data)
    writer.stdin.flush()


def _stopped(writer: _Writer) -> str:
    return f"the collection writer stopped (exit code {writer.process.returncode})"


def reason(exc: BaseException) -> str:
    """An exception in a line: why a record was not written."""
    return f"{type(exc).__name__}: {exc}"[:200]
