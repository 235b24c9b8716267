"""The service's Prometheus metrics, through ``prometheus_client``.

One worker: the metrics live in a registry of the app's own. Several workers (``--workers N``):
``nbmill serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` to a fresh folder before the workers start,
each worker writes its values there, and ``/metrics`` aggregates every worker's, whichever
worker answers the scrape.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    """Requests by status, errors, rows scored, a latency histogram, and which model version
    answers."""

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        # In multiprocess mode values go to the shared folder, whatever registry holds them.
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "nbmill_requests",
            "Scoring requests by HTTP status.",
            ["status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "nbmill_request_errors",
            "Scoring requests answered with 4xx or 5xx.",
            registry=self.registry,
        )
        self.rows = Counter("nbmill_rows_scored", "Rows scored.", registry=self.registry)
        self.latency = Histogram(
            "nbmill_request_latency_seconds",
            "Time from request to response.",
            buckets=BUCKETS_S,
            registry=self.registry,
        )
        self.collect_errors = Counter(
            "nbmill_collect_errors",
            "Scored requests that could not be collected.",
            registry=self.registry,
        )
        self.collect_dropped = Counter(
            "nbmill_collect_dropped",
            "Scored requests dropped because the collection writer fell behind.",
            registry=self.registry,
        )
        self.model = Gauge(
            "nbmill_model_serving",
            "1 for the model version answering (and its files' sha256), 0 for one that did.",
            ["version", "sha256"],
            registry=self.registry,
            multiprocess_mode="liveall",  # each worker's own, while it lives
        )
        self._by_status: dict[int, Counter] = {}
        self._answering: dict[str | None, Gauge] = {}

    def serving(self, version: str | None, sha256: str, before: str | None = None) -> None:
        """``version`` answers now (``before``: the one that answered until now)."""
        if before in self._answering:
            self._answering[before].set(0)
        child = self.model.labels(version=version or "none", sha256=sha256)
        child.set(1)
        self._answering[version] = child

    def observe(self, status: int, seconds: float, rows: int) -> None:
        child = self._by_status.get(status)
        if child is None:
            child = self._by_status[status] = self.requests.labels(status=str(status))
        child.inc()
        if status >= 400:
            self.errors.inc()
        if rows:
            self.rows.inc(rows)
        self.latency.observe(seconds)

    def render(self) -> bytes:
        """The exposition text: this process's metrics, or every worker's in multiprocess mode."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        scrape = CollectorRegistry()
        MultiProcessCollector(scrape)
        return generate_latest(scrape)
