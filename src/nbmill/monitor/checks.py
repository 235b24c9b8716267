"""The monitor step's work for a notebook: find the model's baseline, read the window, judge
it, show it (tables and plots) and send its alerts."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from nbmill import tracking
from nbmill.collection import INPUTS, OUTPUTS, find_baseline
from nbmill.context import notifier as notifier_for
from nbmill.errors import NbmillError
from nbmill.monitor import collected
from nbmill.monitor.profile import Profile
from nbmill.monitor.thresholds import Thresholds
from nbmill.monitor.thresholds import thresholds as parse_thresholds
from nbmill.monitor.verdict import Result, compare, kinds_of


def _moment(value: str | datetime | None) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise NbmillError(f"'{value}': not an ISO 8601 time such as 2026-12-01T09:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def window_of(
    hours: float | None, since: str | datetime | None, until: str | datetime | None
) -> tuple[datetime, datetime]:
    """[since, until): both given, or the ``hours`` before ``until`` (default: now)."""
    end = _moment(until) or datetime.now(UTC)
    start = _moment(since)
    if start is None:
        if hours is None or not hours > 0:
            raise NbmillError(f"hours must be more than 0 (got {hours}), or give since")
        start = end - timedelta(hours=float(hours))
    if start >= end:
        raise NbmillError(f"the window is empty: since {start} is not before until {end}")
    return start, end


def _registered_baseline(model_name: str, alias: str, project: Path) -> tuple[Profile, str]:
    """The baseline profile saved with ``model_name@alias``, and that version. The model is
    downloaded only while its baseline is read."""
    import warnings

    warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm, in a kernel
    from nbmill.models.registry import resolve_registered

    with resolve_registered(f"{model_name}@{alias}", project) as (folder, _, found):
        return Profile.load(find_baseline(folder)), found.get("version")


def check(
    model_name: str,
    alias: str = "production",
    collect_dir: str | Path | None = None,
    endpoint: str | None = None,
    deployment: str = "*",
    hours: float | None = 24,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    thresholds: Thresholds | dict[str, Any] | None = None,
    baseline: str | Path | None = None,
    project_dir: Path | None = None,
) -> Result:
    """The verdict of the window's collected data for ``model_name@alias`` against the baseline
    saved with that version (or the ``baseline`` file given)."""
    project = Path(project_dir or tracking.context().project_dir)
    limits = thresholds if isinstance(thresholds, Thresholds) else parse_thresholds(thresholds)
    identity: dict[str, Any] = {"model": model_name, "alias": alias}
    if baseline is None:
        profile, identity["version"] = _registered_baseline(model_name, alias, project)
    else:
        profile = Profile.load(baseline)
    start, end = window_of(hours, since, until)
    if collect_dir is None:  # the project's (nbmill.yml's collect_dir)
        from nbmill.project.config import load_config

        collect_dir = load_config(project).collect_dir
    root = Path(collect_dir)
    root = root if root.is_absolute() else project / root
    endpoint = endpoint or model_name
    window = {
        **identity,
        "endpoint": endpoint,
        "deployment": deployment,
        "since": start.isoformat(),
        "until": end.isoformat(),
    }
    features, predictions = kinds_of(profile.features), kinds_of(profile.predictions)
    try:
        inputs = collected.chunks(root, endpoint, features, INPUTS, deployment, start, end)
        outputs = collected.chunks(root, endpoint, predictions, OUTPUTS, deployment, start, end)
        return compare(profile, inputs, outputs if predictions else (), limits, window)
    except NbmillError as exc:
        raise NbmillError(f"monitoring {model_name}@{alias}: {exc}") from None


def tables(result: Result):
    """(drift, quality, health) as pandas DataFrames, rounded for reading."""
    import pandas as pd

    drift = pd.DataFrame(result.drift)
    shown = [
        c
        for c in (
            "column",
            "role",
            "kind",
            "rows",
            "metric",
            "value",
            "threshold",
            "drifted",
            "normalized_wasserstein_distance",
            "jensen_shannon_distance",
            "population_stability_index",
            "two_sample_kolmogorov_smirnov_test",
            "pearsons_chi_squared_test",
            "baseline_mean",
            "window_mean",
            "note",
        )  # fmt: skip
        if c in drift.columns
    ]
    quality = pd.DataFrame(result.quality).drop(columns=["breaches"], errors="ignore")
    health = pd.DataFrame(
        [{k: v for k, v in result.health.items() if k not in ("statuses", "breaches")}]
    )
    health["statuses"] = json.dumps(result.health["statuses"])
    health["breaches"] = ", ".join(result.health["breaches"]) or "none"
    return drift[shown].round(4), quality.round(4), health.round(2)


def plot_drifted(result: Result, columns: int = 3):
    """One panel per drifted column: the baseline's distribution against the window's.
    None when nothing drifted."""
    if not result.shares:
        return None
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(result.shares)
    cols = min(columns, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), names, strict=False):
        share = result.shares[name]
        if "bounds" in share:  # numeric: bins of equal baseline mass
            bounds = np.asarray(share["bounds"])
            widths = np.diff(bounds)
            widths[widths == 0] = 1e-12
            for key, colour in (("baseline", "tab:blue"), ("window", "tab:orange")):
                density = np.asarray(share[key]) / widths
                ax.stairs(density, bounds, label=key, color=colour, fill=key == "baseline",
                          alpha=0.35 if key == "baseline" else 1.0)  # fmt: skip
            ax.set_ylabel("density")
        else:
            x = np.arange(len(share["categories"]))
            ax.bar(x - 0.2, share["baseline"], 0.4, label="baseline")
            ax.bar(x + 0.2, share["window"], 0.4, label="window")
            ax.set_xticks(x, share["categories"], rotation=45, ha="right")
            ax.set_ylabel("share")
        row = next(r for r in result.drift if r["column"] == name)
        ax.set_title(f"{name}: {row['metric']} {row['value']:.3g}", fontsize=9)
        ax.legend(fontsize=8)
    for ax in axes.ravel()[len(names) :]:
        ax.set_visible(False)
    fig.tight_layout()
    plt.close(fig)  # shown once, as the cell's value, not again by the inline backend
    return fig


def alert(result: Result, project_dir: Path | None = None) -> list[dict[str, Any]]:
    """Emit each alert of ``result`` (drift, data quality, health) as a lifecycle event, through
    the ledger and the configured sinks; returns the events."""
    window = result.window
    subject = f"models/{window.get('model')}/{window.get('version') or window.get('alias')}"
    summary = {k: window.get(k) for k in ("model", "version", "alias", "endpoint", "since")}
    summary.update(until=window.get("until"), requests=window.get("requests"))
    summary.update(rows=window.get("rows"))
    events = []
    if not result.alerts:
        return events
    with notifier_for(project_dir) as notifier:
        for found in result.alerts:
            data = {**summary, **{k: v for k, v in found.items() if k != "type"}}
            events.append(notifier.emit(found["type"], subject, _finite(data)))
    return events


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: they become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def save(result: Result, path: str | Path) -> Path:
    """The verdict as JSON, for the run record."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(result.to_dict()), indent=1) + "\n", encoding="utf-8")
    return path
