"""Lifecycle events (CloudEvents 1.0) and their delivery: the ledger always, then the sinks.

``Notifier.emit`` appends the event to the hash-chained ledger (the record; synchronous), then
offers it to each sink (``governance.sinks``) that accepts it. A background sink gets it through
a spool folder and a background thread that delivers it with retries and backoff: a delivered
event leaves the spool; one that could not be delivered stays there for ``nbmill events retry``.
A sink that writes at once (Azure DevOps' logging commands) gets it in the caller's thread.
Delivery never fails or blocks a run for long, and no event is lost while a sink is down. A
spool file that is not an event (cut short, or edited) is kept and named, never deleted, and the
other events are still sent.
"""

from __future__ import annotations

import json
import queue
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from nbmill._fs import write_atomic
from nbmill._time import iso, utcnow
from nbmill.errors import NbmillError
from nbmill.governance.ledger import Ledger
from nbmill.governance.sinks import DeliveryError, Sink, open_sinks
from nbmill.project.config import ProjectConfig, SinkConfig
from nbmill.project.secret import EnvRef

# Each nbmill event and its nearest Azure Machine Learning Event Grid event type.
TYPES: dict[str, str] = {
    "nbmill.run.started": "Microsoft.MachineLearningServices.RunStatusChanged",
    "nbmill.run.completed": "Microsoft.MachineLearningServices.RunCompleted",
    "nbmill.run.failed": "Microsoft.MachineLearningServices.RunStatusChanged",
    "nbmill.run.reproduced": "Microsoft.MachineLearningServices.RunCompleted",
    "nbmill.step.completed": "Microsoft.MachineLearningServices.RunCompleted",
    "nbmill.step.failed": "Microsoft.MachineLearningServices.RunStatusChanged",
    "nbmill.model.registered": "Microsoft.MachineLearningServices.ModelRegistered",
    "nbmill.model.promoted": "Microsoft.MachineLearningServices.ModelRegistered",
    "nbmill.model.deployed": "Microsoft.MachineLearningServices.ModelDeployed",
    "nbmill.drift.detected": "Microsoft.MachineLearningServices.DatasetDriftDetected",
    # Azure ML sends no event of its own for these two: its monitors alert by email.
    "nbmill.quality.breached": "Microsoft.MachineLearningServices.DatasetDriftDetected",
    "nbmill.health.degraded": "Microsoft.MachineLearningServices.DatasetDriftDetected",
}
BACKOFF_S = 0.25
CLOSE_TIMEOUT_S = 15.0


def new_event(event_type: str, subject: str, data: dict[str, Any], source: str) -> dict[str, Any]:
    """A CloudEvents 1.0 event in structured JSON form, as Azure Event Grid accepts it."""
    if event_type not in TYPES:
        raise NbmillError(f"unknown event type '{event_type}' (types: {', '.join(TYPES)})")
    moment = utcnow()
    return {
        "specversion": "1.0",
        "id": moment.strftime("%Y%m%dT%H%M%S%fZ-") + secrets.token_hex(4),
        "source": source,
        "type": event_type,
        "time": iso(moment),
        "subject": subject,
        "datacontenttype": "application/json",
        "data": data,
    }


def source_for(project_dir: Path) -> str:
    return f"/nbmill/{socket.gethostname()}/{Path(project_dir).name}"


@dataclass(frozen=True)
class Spool:
    """Events waiting for a sink, one file each: ``<dir>/<sink>/<event-id>.json``."""

    dir: Path

    def put(self, sink: str, event: dict[str, Any]) -> Path:
        path = self.dir / sink / f"{event['id']}.json"
        write_atomic(path, json.dumps(event, sort_keys=True) + "\n")
        return path

    @staticmethod
    def read(path: Path) -> dict[str, Any]:
        """The event spooled at ``path``; NbmillError naming the file if it is not one."""
        try:
            event = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            problem = f"not valid JSON ({exc})"
        else:
            if isinstance(event, dict) and {"id", "type"} <= set(event):
                return event
            problem = "no event id and type in it"
        raise NbmillError(
            f"{path}: not a spooled event ({problem}); skipped and kept: look at it, then fix "
            "or delete it"
        )

    def pending(self) -> list[tuple[str, Path]]:
        if not self.dir.exists():
            return []
        return sorted(
            (folder.name, path)
            for folder in self.dir.iterdir()
            if folder.is_dir()
            for path in folder.glob("*.json")
        )


def deliver(sink: Sink, event: dict[str, Any], sleep: Callable[[float], None] = time.sleep) -> None:
    """Send to one sink, retrying with exponential backoff; raises DeliveryError at the end."""
    attempts = sink.config.retries + 1
    for attempt in range(attempts):
        try:
            return sink.send(event)
        except DeliveryError:
            if attempt == attempts - 1:
                raise
            sleep(BACKOFF_S * 2**attempt)


class Notifier:
    """Emits events for one process: ledger first, then every sink that accepts them.

    ``sinks`` are built once: the configured ones, then any that switch themselves on (Azure
    DevOps inside Azure Pipelines). ``delivered`` and ``failed`` count background deliveries.
    """

    def __init__(
        self, config: ProjectConfig, stdout: TextIO | None = None, stderr: TextIO | None = None
    ):
        self.config = config
        self.ledger = Ledger(config.ledger)
        self.spool = Spool(config.spool_dir)
        self.source = source_for(config.project_dir)
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.sinks: list[Sink] = open_sinks(config.sinks, self.stdout)
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._reasons: set[tuple[str, str]] = set()  # unexpected failures already reported
        self.delivered = 0
        self.failed = 0

    def emit(self, event_type: str, subject: str, data: dict[str, Any]) -> dict[str, Any]:
        event = new_event(event_type, subject, data, self.source)
        self.ledger.append(event)
        for sink in self.sinks:
            if not self._accepts(sink, event):
                continue
            if sink.background:
                path = self.spool.put(sink.name, event)
                self._queue.put((sink, event, path))
                self._start()
            else:
                self._write(sink, event)
        return event

    def _accepts(self, sink: Sink, event: dict[str, Any]) -> bool:
        try:
            return sink.accepts(event)
        except Exception as exc:  # a bug in the sink: said once, and the caller goes on
            self._unexpected(sink, event, exc, "not kept")
            return False

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="nbmill-notify", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self._deliver(*item)

    def _deliver(self, sink: Sink, event: dict[str, Any], path: Path) -> None:
        """Deliver one event; whatever goes wrong, it stays spooled and the thread goes on."""
        try:
            deliver(sink, event)
        except DeliveryError as exc:
            self.failed += 1
            self.stderr.write(
                f"warning: notify '{sink.name}': {event['type']} not delivered ({exc}); {KEPT}\n"
            )
        except Exception as exc:  # a bug, not a sink being down: later events must still go
            self.failed += 1
            self._unexpected(sink, event, exc, KEPT)
        else:
            self.delivered += 1
            path.unlink(missing_ok=True)

    def _write(self, sink: Sink, event: dict[str, Any]) -> None:
        """Send to a sink that writes at once; a failure is said, never raised to the caller."""
        try:
            sink.send(event)
        except DeliveryError as exc:
            self.stderr.write(
                f"warning: notify '{sink.name}': {event['type']} not written ({exc})\n"
            )
        except Exception as exc:  # a bug: the run goes on, and later events are still written
            self._unexpected(sink, event, exc, "not kept")

    def _unexpected(self, sink: Sink, event: dict[str, Any], exc: Exception, kept: str) -> None:
        """Say so once per sink and reason: the same bug fails every event alike."""
        reason = _without_secrets(f"{type(exc).__name__}: {exc}", sink.config)[:300]
        if (sink.name, reason) in self._reasons:
            return
        self._reasons.add((sink.name, reason))
        self.stderr.write(
            f"warning: notify '{sink.name}': {event['type']} not delivered, unexpectedly "
            f"({reason}); {kept}; later events are still sent, and this is said once\n"
        )

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Wait (bounded) for deliveries, then close the sinks; whatever is left stays in the
        spool. A background sink still busy after ``timeout`` is left to its daemon thread."""
        busy = False
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            busy = self._thread.is_alive()
            self._thread = None
        for sink in self.sinks:
            if not (busy and sink.background):
                _close(sink, self.stderr)


KEPT = "kept in the spool, send it later with `nbmill events retry`"


def _close(sink: Sink, stderr: TextIO) -> None:
    try:
        sink.close()
    except Exception as exc:  # closing one sink must not keep the others open
        reason = _without_secrets(f"{type(exc).__name__}: {exc}", sink.config)[:300]
        stderr.write(f"warning: notify '{sink.name}': not closed cleanly ({reason})\n")


def _without_secrets(text: str, sink: SinkConfig) -> str:
    """``text`` without the sink's URL and key, which an exception's message may quote."""
    for secret in (sink.url, sink.api_key):
        value = secret.value() if isinstance(secret, EnvRef) else secret
        if value:
            text = text.replace(value, "<secret>")
    return text


def retry_spooled(config: ProjectConfig, only: str | None = None) -> tuple[int, list[str]]:
    """Deliver every spooled event again (``only``: those of the sink of that name); returns
    (delivered, problems). A file that is not an event is a problem, kept and skipped: the
    others are still delivered."""
    opened = open_sinks(config.sinks, sys.stdout)
    sinks = {s.name: s for s in opened if s.background}
    delivered, problems = 0, []
    try:
        for name, path in Spool(config.spool_dir).pending():
            if only is not None and name != only:
                continue
            sink = sinks.get(name)
            if sink is None:
                problems.append(f"{path.name}: no sink named '{name}' in the configuration; kept")
                continue
            try:
                event = Spool.read(path)
            except NbmillError as exc:
                problems.append(str(exc))
                continue
            try:
                deliver(sink, event)
            except DeliveryError as exc:
                problems.append(f"notify '{name}': {event['type']} {event['id']}: {exc}; kept")
            else:
                path.unlink()
                delivered += 1
    finally:
        for sink in opened:
            _close(sink, sys.stderr)
    return delivered, problems


def filter_events(
    events: Iterable[dict[str, Any]],
    event_type: str | None = None,
    subject: str | None = None,
    since: str | None = None,
) -> list[dict[str, Any]]:
    """Events matching a type (``nbmill.run.*`` allowed), a subject prefix and a start time."""
    matcher = SinkConfig("filter", "webhook", events=(event_type,)) if event_type else None
    return [
        e
        for e in events
        if (matcher is None or matcher.wants(e["type"]))
        and (subject is None or e.get("subject", "").startswith(subject))
        and (since is None or e["time"] >= since)
    ]
