"""Monitoring deployed models: the baseline profile saved with a model, and the verdict of a
window of collected scoring data against it (drift, data quality, health), with its alerts.

The surface a notebook uses::

    from nbmill import monitor
    monitor.profile_frame(train, predictions)   the baseline, at training time (with the model)
    monitor.check(model_name, alias, hours=24)  a window's verdict: a Result
    monitor.tables(result)                      the verdict as pandas tables
    monitor.plot_drifted(result)                baseline against window, per drifted column
    monitor.alert(result)                       its alerts, through the ledger and the sinks
    monitor.save(result, path)                  the verdict as JSON, for the run record

Each name is imported on first use: ``nbmill.monitor.profile`` needs neither pyarrow nor scipy.
"""

from __future__ import annotations

from nbmill._lazy import surface

__getattr__, __all__ = surface(
    __name__,
    {
        "nbmill.monitor.profile": ("profile_frame", "Profile"),
        "nbmill.collection": ("find_baseline",),
        "nbmill.monitor.verdict": ("Monitor", "Result", "compare"),
        "nbmill.monitor.checks": ("check", "tables", "plot_drifted", "alert", "save"),
        "nbmill.monitor.thresholds": ("Thresholds",),
    },
)
