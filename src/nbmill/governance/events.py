"""Lifecycle events (CloudEvents 1.0) and their delivery: the ledger always, then the sinks.

``Notifier.emit`` appends the event to the hash-chained ledger (the record; synchronous), writes
it to a spool folder for each external sink, and hands it to a background thread that delivers
it with retries and backoff. A delivered event leaves the spool; one that could not be delivered
stays there for ``nbmill events retry``. Delivery never fails or blocks a run for long, and no
event is lost while a sink is down. A spool file that is not an event (cut short, or edited) is
kept and named, never deleted, and the other events are still sent.
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
from nbmill.governance.sinks import DeliveryError, azure_devops, webhook
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


# The sinks that events are spooled for and delivered to in the background, by type.
DELIVERED = ("webhook", "openlineage")


def _sender(sink: SinkConfig):
    """The module that sends to this sink: ``send(sink, event)``, raising DeliveryError."""
    if sink.type == "openlineage":
        from nbmill.governance.sinks import openlineage  # its client loads only when configured

        return openlineage
    return webhook


def accepts(sink: SinkConfig, event: dict[str, Any]) -> bool:
    """The event types the sink asks for; of those, OpenLineage takes the lineage events."""
    if not sink.wants(event["type"]):
        return False
    return sink.type != "openlineage" or _sender(sink).accepts(event)


def deliver(sink: SinkConfig, event: dict[str, Any], sleep: Callable[[float], None] = time.sleep):
    """Send to one sink, retrying with exponential backoff; raises DeliveryError at the end."""
    attempts = sink.retries + 1
    for attempt in range(attempts):
        try:
            return _sender(sink).send(sink, event)
        except DeliveryError:
            if attempt == attempts - 1:
                raise
            sleep(BACKOFF_S * 2**attempt)


class Notifier:
    """Emits events for one process: ledger first, then every sink that wants them."""

    def __init__(
        self, config: ProjectConfig, stdout: TextIO | None = None, stderr: TextIO | None = None
    ):
        self.config = config
        self.ledger = Ledger(config.ledger)
        self.spool = Spool(config.spool_dir)
        self.source = source_for(config.project_dir)
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._reasons: set[str] = set()  # unexpected failures already reported
        self.delivered = 0
        self.failed = 0

    @property
    def delivered_sinks(self) -> list[SinkConfig]:
        return [s for s in self.config.sinks if s.type in DELIVERED]

    def emit(self, event_type: str, subject: str, data: dict[str, Any]) -> dict[str, Any]:
        event = new_event(event_type, subject, data, self.source)
        self.ledger.append(event)
        if azure_devops.active(self.config.sinks):
            azure_devops.write(event, self.stdout)
        for sink in self.delivered_sinks:
            if accepts(sink, event):
                path = self.spool.put(sink.name, event)
                self._queue.put((sink, event, path))
                self._start()
        return event

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

    def _deliver(self, sink: SinkConfig, event: dict[str, Any], path: Path) -> None:
        """Deliver one event; whatever goes wrong, it stays spooled and the thread goes on."""
        try:
            deliver(sink, event)
        except DeliveryError as exc:
            self.failed += 1
            self.stderr.write(
                f"warning: notify '{sink.name}': {event['type']} not delivered ({exc}); "
                "kept in the spool, send it later with `nbmill events retry`\n"
            )
        except Exception as exc:  # a bug, not a sink being down: later events must still go
            self.failed += 1
            self._unexpected(sink, event, exc)
        else:
            self.delivered += 1
            path.unlink(missing_ok=True)

    def _unexpected(self, sink: SinkConfig, event: dict[str, Any], exc: Exception) -> None:
        """Say so once per reason: the same bug fails every event alike, one line is enough."""
        reason = _without_secrets(f"{type(exc).__name__}: {exc}", sink)[:300]
        if reason in self._reasons:
            return
        self._reasons.add(reason)
        self.stderr.write(
            f"warning: notify '{sink.name}': {event['type']} not delivered, unexpectedly "
            f"({reason}); kept in the spool, send it later with `nbmill events retry`; "
            "later events are still sent, and this is said once\n"
        )

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Wait (bounded) for deliveries; whatever is left stays in the spool."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None


def _without_secrets(text: str, sink: SinkConfig) -> str:
    """``text`` without the sink's URL and key, which an exception's message may quote."""
    for secret in (sink.url, sink.api_key):
        value = secret.value() if isinstance(secret, EnvRef) else secret
        if value:
            text = text.replace(value, "<secret>")
    return text


def retry_spooled(config: ProjectConfig) -> tuple[int, list[str]]:
    """Deliver every spooled event again; returns (delivered, problems). A file that is not
    an event is a problem, kept and skipped: the others are still delivered."""
    sinks = {s.name: s for s in config.sinks}
    delivered, problems = 0, []
    for name, path in Spool(config.spool_dir).pending():
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
