"""One monitoring verdict: a window of collected data against the model's baseline profile.

``Monitor`` takes chunks (from the collection, or any table source) and ``result()`` judges
every feature and prediction column for drift, every feature for data quality, and the
endpoint's health, each against ``Thresholds``; breaches become alerts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from nbmill.errors import NbmillError
from nbmill.monitor.collected import Chunk, Column
from nbmill.monitor.profile import CategoricalProfile, NumericProfile, Profile
from nbmill.monitor.thresholds import PVALUES, Thresholds
from nbmill.monitor.window import CategoricalWindow, NumericWindow

DRIFT = "nbmill.drift.detected"
QUALITY = "nbmill.quality.breached"
HEALTH = "nbmill.health.degraded"


def _window(base):
    return NumericWindow(base) if isinstance(base, NumericProfile) else CategoricalWindow(base)


def kinds_of(group: dict[str, NumericProfile | CategoricalProfile]) -> dict[str, str]:
    return {name: p.kind for name, p in group.items()}


@dataclass
class Result:
    """The verdict of one window: tables a reviewer reads, and the alerts to send."""

    window: dict[str, Any]
    drift: list[dict[str, Any]]
    quality: list[dict[str, Any]]
    health: dict[str, Any]
    alerts: list[dict[str, Any]]
    shares: dict[str, dict[str, list]] = field(default_factory=dict)

    @property
    def drifted(self) -> list[str]:
        return [row["column"] for row in self.drift if row["drifted"]]

    def metrics(self) -> dict[str, float]:
        """Numbers for the run record: what was read and how many breaches of each kind."""
        return {
            "requests": self.health["requests"],
            "rows": self.window["rows"],
            "drift_detected": float(any(a["type"] == DRIFT for a in self.alerts)),
            "drifted_columns": len(self.drifted),
            "quality_breaches": sum(1 for row in self.quality if row["breached"]),
            "health_breaches": len(self.health["breaches"]),
            "alerts": len(self.alerts),
        }

    def to_dict(self) -> dict[str, Any]:
        """Every field but ``shares`` (the plots' data)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "shares"}


class Monitor:
    def __init__(self, profile: Profile, thresholds: Thresholds | None = None):
        self.profile = profile
        self.thresholds = thresholds or Thresholds()
        self.scored = {name: _window(p) for name, p in profile.features.items()}
        self.refused = {name: _window(p) for name, p in profile.features.items()}
        self.outputs = {name: _window(p) for name, p in profile.predictions.items()}
        self.statuses: dict[int, int] = {}
        self.latencies: list[np.ndarray] = []
        self.versions: dict[str, int] = {}
        self.files = 0
        self.slow_files = 0

    def add_rows(self, columns: dict[str, Column], scored: bool = True) -> None:
        windows = self.scored if scored else self.refused
        for name, column in columns.items():
            if name in windows:
                windows[name].update(column.values, column.type_errors)

    def add_outputs(self, columns: dict[str, Column]) -> None:
        for name, column in columns.items():
            if name in self.outputs:
                self.outputs[name].update(column.values, column.type_errors)

    def add_requests(self, requests: pa.Table) -> None:
        for status, count in _counts(requests["status"]).items():
            self.statuses[int(status)] = self.statuses.get(int(status), 0) + count
        for version, count in _counts(requests["modelversion"]).items():
            key = "unknown" if version is None else str(version)
            self.versions[key] = self.versions.get(key, 0) + count
        latency = requests["latencyms"].to_numpy(zero_copy_only=False).astype(float)
        self.latencies.append(latency[~np.isnan(latency)])

    def add_chunk(self, chunk: Chunk, outputs: bool = False) -> None:
        self.files += 1
        self.slow_files += chunk.slow
        if outputs:
            self.add_outputs(chunk.scored)
            return
        self.add_requests(chunk.requests)
        self.add_rows(chunk.scored, scored=True)
        self.add_rows(chunk.refused, scored=False)

    # --- the verdict -------------------------------------------------------------------------

    def result(self, window: dict[str, Any] | None = None) -> Result:
        rows = max((w.rows for w in self.scored.values()), default=0)
        requests = sum(self.statuses.values())
        if not requests and not rows:
            where = ", ".join(f"{k} {v}" for k, v in (window or {}).items() if v) or "the window"
            raise NbmillError(
                f"no collected requests in {where}: send traffic to the endpoint "
                "(nbmill traffic NAME@ALIAS) or widen the window (hours, since/until)"
            )
        drift = [self._drift(name, w, "feature") for name, w in self.scored.items()]
        drift += [self._drift(name, w, "prediction") for name, w in self.outputs.items()]
        quality = [self._quality(name) for name in self.scored]
        health = self._health(requests)
        info = {**(window or {}), "requests": requests, "rows": rows, "files": self.files}
        info["versions"] = dict(sorted(self.versions.items()))
        info["files_read_line_by_line"] = self.slow_files
        shares = {
            row["column"]: (self.scored.get(row["column"]) or self.outputs[row["column"]]).shares()
            for row in drift
            if row["drifted"]
        }
        return Result(info, drift, quality, health, _alerts(drift, quality, health), shares)

    def _drift(self, name: str, window, role: str) -> dict[str, Any]:
        row: dict[str, Any] = {"column": name, "role": role, "kind": window.base.kind}
        row["rows"] = window.count
        metric = self.thresholds.metric_for(window.base.kind, window.count)
        values = window.drift(pvalues=metric in PVALUES) if window.count else {}
        value = values.get(metric, math.nan)
        row.update(
            metric=metric,
            value=value,
            threshold=getattr(self.thresholds, metric),
            drifted=bool(window.count) and self.thresholds.breached(metric, value),
        )
        if isinstance(window, NumericWindow):
            row.update(baseline_mean=window.base.mean, window_mean=window.mean())
        row.update(values)
        if not window.count:
            row["note"] = "no values in the window"
        return row

    def _quality(self, name: str) -> dict[str, Any]:
        scored, refused = self.scored[name], self.refused[name]
        rows = scored.rows + refused.rows
        if isinstance(scored, NumericWindow):
            outside = scored.out_of_range + refused.out_of_range
        else:  # a category the baseline never had is out of its bounds
            outside = sum(scored.unseen().values()) + sum(refused.unseen().values())
        rates = {
            "null_value_rate": (scored.missing + refused.missing) / rows if rows else math.nan,
            "data_type_error_rate": (
                (scored.type_errors + refused.type_errors) / rows if rows else math.nan
            ),
            "out_of_bounds_rate": outside / rows if rows else math.nan,
        }
        breaches = [m for m, v in rates.items() if self.thresholds.breached(m, v)]
        row: dict[str, Any] = {"column": name, "rows": rows, **rates, "breached": bool(breaches)}
        row["breaches"] = breaches
        if rows and scored.missing + refused.missing == rows:
            row["note"] = "missing from every row: the column is not sent"
        elif isinstance(scored, CategoricalWindow):
            unseen = {**scored.unseen(), **refused.unseen()}
            if unseen:
                row["note"] = "unseen categories: " + ", ".join(sorted(map(str, unseen))[:10])
        return row

    def _health(self, requests: int) -> dict[str, Any]:
        errors = sum(c for s, c in self.statuses.items() if s >= 500)
        refused = sum(c for s, c in self.statuses.items() if 400 <= s < 500)
        latency = np.concatenate(self.latencies) if self.latencies else np.array([])
        health: dict[str, Any] = {
            "requests": requests,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "error_rate": errors / requests if requests else math.nan,
            "refused_rate": refused / requests if requests else math.nan,
            "latency_p50_ms": float(np.percentile(latency, 50)) if len(latency) else math.nan,
            "latency_p99_ms": float(np.percentile(latency, 99)) if len(latency) else math.nan,
        }
        health["breaches"] = [
            m
            for m in ("error_rate", "refused_rate", "latency_p99_ms")
            if self.thresholds.breached(m, health[m])
        ]
        return health


def _counts(column: pa.ChunkedArray | pa.Array) -> dict[Any, int]:
    counted = pc.value_counts(column)
    if isinstance(counted, pa.ChunkedArray):
        counted = counted.combine_chunks()
    return dict(
        zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist(), strict=True)
    )


def _alerts(drift, quality, health) -> list[dict[str, Any]]:
    alerts = []
    features = [r["column"] for r in drift if r["drifted"] and r["role"] == "feature"]
    outputs = [r["column"] for r in drift if r["drifted"] and r["role"] == "prediction"]
    if features or outputs:
        alerts.append(
            {
                "type": DRIFT,
                "features": features,
                "predictions": outputs,
                "metrics": {
                    r["column"]: {
                        "metric": r["metric"],
                        "value": r["value"],
                        "limit": r["threshold"],
                    }
                    for r in drift
                    if r["drifted"]
                },
            }
        )
    breached = {r["column"]: r["breaches"] for r in quality if r["breached"]}
    if breached:
        alerts.append({"type": QUALITY, "features": breached})
    if health["breaches"]:
        alerts.append({"type": HEALTH, "breaches": {m: health[m] for m in health["breaches"]}})
    return alerts


def compare(
    profile: Profile,
    inputs: Iterable[Chunk],
    outputs: Iterable[Chunk] = (),
    thresholds: Thresholds | None = None,
    window: dict[str, Any] | None = None,
) -> Result:
    """The verdict of collected chunks (``collected.chunks``) against ``profile``."""
    monitor = Monitor(profile, thresholds)
    for chunk in inputs:
        monitor.add_chunk(chunk)
    for chunk in outputs:
        monitor.add_chunk(chunk, outputs=True)
    return monitor.result(window)
