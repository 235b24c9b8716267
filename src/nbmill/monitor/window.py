"""A monitoring window: what was collected, accumulated chunk by chunk against the baseline.

Each chunk of values updates small per-feature totals (a histogram on the baseline's bins, the
frequencies of categories, counts of missing, out-of-range and mistyped values), vectorised,
so a window of any size is read in one pass, in memory bounded by the chunk.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nbmill.monitor import stats
from nbmill.monitor.profile import CategoricalProfile, NumericProfile, histogram, value_counts


@dataclass
class NumericWindow:
    base: NumericProfile
    rows: int = 0
    missing: int = 0
    type_errors: int = 0
    out_of_range: int = 0
    total: float = 0.0
    squares: float = 0.0
    counts: np.ndarray = field(init=False)
    sums: np.ndarray = field(init=False)
    ties: np.ndarray = field(init=False)
    edges: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.edges = np.asarray(self.base.edges, float)
        self.counts = np.zeros(len(self.edges) + 1, np.int64)
        self.sums = np.zeros(len(self.edges) + 1)
        self.ties = np.zeros(len(self.edges), np.int64)

    def update(self, values: np.ndarray, type_errors: int = 0) -> None:
        """Add a chunk: float values, NaN where missing (``type_errors`` of them were values
        that are not numbers, counted apart)."""
        x = np.asarray(values, dtype=float)
        present = x[~np.isnan(x)]
        self.rows += len(x)
        self.type_errors += type_errors
        self.missing += len(x) - len(present) - type_errors
        if not len(present):
            return
        if self.base.min is not None:
            self.out_of_range += int(((present < self.base.min) | (present > self.base.max)).sum())
        self.total += float(present.sum())
        self.squares += float(np.dot(present, present))
        counts, sums, ties = histogram(present, self.edges)
        self.counts += counts
        self.sums += sums
        self.ties += ties

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    def drift(self, pvalues: bool = True) -> dict[str, float]:
        """Every statistic; the test's p-value only with ``pvalues``."""
        base_counts = np.asarray(self.base.counts)
        ks = stats.ks_statistic(base_counts, self.counts, self.base.ties, self.ties)
        raw = stats.wasserstein(self.edges, base_counts, self.base.sums, self.counts, self.sums)
        return {
            "normalized_wasserstein_distance": stats.normalized_wasserstein(raw, self.base.std),
            "wasserstein_distance": raw,
            "population_stability_index": stats.psi(base_counts, self.counts),
            "ks_statistic": ks,
            "two_sample_kolmogorov_smirnov_test": (
                stats.ks_pvalue(ks, self.base.count, self.count) if pvalues else math.nan
            ),
        }

    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan

    def std(self) -> float:
        if not self.count:
            return math.nan
        return math.sqrt(max(self.squares / self.count - self.mean() ** 2, 0.0))

    def shares(self, groups: int = 20) -> dict[str, list[float]]:
        """Baseline and window shares on up to ``groups`` bins of about equal baseline mass,
        with their bounds, for a plot."""
        group = stats.psi_groups(np.asarray(self.base.counts), groups)
        group[0], group[-1] = 0, groups - 1  # the open bins join the first and the last
        low = min(float(self.edges[0]), self._current_min())
        high = max(float(self.edges[-1]), self._current_max())
        upper = np.append(self.edges, high)  # bin j ends at edges[j]; the last bin at high
        used = np.unique(group)
        base = np.bincount(group, weights=self.base.counts, minlength=groups)[used]
        window = np.bincount(group, weights=self.counts, minlength=groups)[used]
        bounds = [low] + [float(upper[np.flatnonzero(group == g).max()]) for g in used]
        return {
            "bounds": bounds,
            "baseline": (base / max(base.sum(), 1)).tolist(),
            "window": (window / max(window.sum(), 1)).tolist(),
        }

    def _current_min(self) -> float:
        below = self.counts[0]
        return float(self.sums[0] / below) if below else float(self.edges[0])

    def _current_max(self) -> float:
        top = self.counts[-1]
        return float(self.sums[-1] / top) if top else float(self.edges[-1])


@dataclass
class CategoricalWindow:
    base: CategoricalProfile
    rows: int = 0
    missing: int = 0
    type_errors: int = 0
    frequencies: Counter = field(default_factory=Counter)

    def update(self, values: Any, type_errors: int = 0) -> None:
        """Add a chunk of categories (a pyarrow array, or a list), None where missing
        (``type_errors`` of those were values of the wrong type, counted apart)."""
        counts = value_counts(values)
        nones = counts.pop(None, 0)
        self.rows += nones + sum(counts.values())
        self.missing += nones - type_errors
        self.type_errors += type_errors
        self.frequencies.update(counts)

    @property
    def count(self) -> int:
        return sum(self.frequencies.values())

    def _baseline(self) -> dict[str, int]:
        base = dict(self.base.categories)
        if self.base.other:
            base[OTHER] = self.base.other
        return base

    def _window(self) -> dict[str, int]:
        known = set(self.base.categories)
        window: Counter = Counter()
        for name, count in self.frequencies.items():
            window[name if name in known or not self.base.other else OTHER] += count
        return dict(window)

    def unseen(self) -> dict[str, int]:
        """Categories the baseline never had (none can be told apart when it had ``other``)."""
        if self.base.other:
            return {}
        return {k: v for k, v in self.frequencies.items() if k not in self.base.categories}

    def drift(self, pvalues: bool = True) -> dict[str, float]:
        """Every statistic; the test's p-value only with ``pvalues``."""
        base, window = self._baseline(), self._window()
        statistic, pvalue = stats.chi_squared(base, window) if pvalues else (math.nan, math.nan)
        names, b, w = stats.shares(base, window)
        psi = stats.psi_of_shares(b / b.sum(), w / w.sum()) if b.sum() and w.sum() else math.nan
        return {
            "jensen_shannon_distance": stats.jensen_shannon(base, window),
            "population_stability_index": psi,
            "chi_squared_statistic": statistic,
            "pearsons_chi_squared_test": pvalue,
        }

    def shares(self, top: int = 12) -> dict[str, list]:
        base, window = self._baseline(), self._window()
        names, b, w = stats.shares(base, window)
        order = np.argsort(-(b / max(b.sum(), 1) + w / max(w.sum(), 1)))[:top]
        return {
            "categories": [names[i] for i in order],
            "baseline": (b[order] / max(b.sum(), 1)).tolist(),
            "window": (w[order] / max(w.sum(), 1)).tolist(),
        }


OTHER = "(other)"
