"""Drift statistics, pure functions of two histograms on the same bins (``profile``'s layout):
the baseline's and the window's counts, and the sums of the values in each bin.

Numeric: population stability index, Wasserstein distance (normalised by the baseline's
standard deviation, as Azure ML's ``normalized_wasserstein_distance`` and Evidently's
``wasserstein``), two-sample Kolmogorov-Smirnov statistic and p-value. Categorical:
Jensen-Shannon distance and Pearson's chi-squared test, on frequencies.

The p-values (Kolmogorov-Smirnov, chi-squared) need scipy.stats, imported only when asked for:
a large window is judged by distances. Kolmogorov-Smirnov is exact, and Wasserstein exact up
to where the two distribution functions cross inside one bin, when the baseline's edges are
its distinct values (up to MAX_EDGES of them); beyond that the edges are quantiles and the
statistics are within a bin's mass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

PSI_BINS = 10
PSI_EPSILON = 1e-4  # empty bins are this share, so the index stays finite


def ks_statistic(
    base_counts: np.ndarray, counts: np.ndarray, base_ties: np.ndarray, ties: np.ndarray
) -> float:
    """sup |F_base - F_window|, evaluated at each edge and just below it: both distribution
    functions jump only there (exactly so when the edges are the baseline's values)."""
    base, window = np.asarray(base_counts, float), np.asarray(counts, float)
    if not base.sum() or not window.sum():
        return math.nan
    below_b = np.cumsum(base)[:-1] / base.sum()  # P(X < edge)
    below_w = np.cumsum(window)[:-1] / window.sum()
    at_b = below_b + np.asarray(base_ties, float) / base.sum()  # P(X <= edge)
    at_w = below_w + np.asarray(ties, float) / window.sum()
    return float(max(np.max(np.abs(below_b - below_w)), np.max(np.abs(at_b - at_w))))


def ks_pvalue(statistic: float, n_base: int, n_window: int) -> float:
    """Smirnov's asymptotic two-sided p-value, as ``scipy.stats.ks_2samp(method="asymp")``."""
    if math.isnan(statistic) or not n_base or not n_window:
        return math.nan
    from scipy import stats as sps  # 70 MB and 0.6 s: only when a test is asked for

    m, n = sorted((float(n_base), float(n_window)), reverse=True)
    return float(sps.kstwo.sf(statistic, np.round(m * n / (m + n))))


def _integrals(edges: np.ndarray, counts: np.ndarray, sums: np.ndarray) -> np.ndarray:
    """For each bin, the integral of the empirical distribution function over it (inner bins)
    or of its distance to 0 or 1 (the open bins below the first and from the last edge)."""
    n = counts.sum()
    widths = np.diff(edges)
    before = np.cumsum(counts)[:-2]  # values in the bins before each inner bin
    inner = (before * widths + counts[1:-1] * edges[1:] - sums[1:-1]) / n
    below = (counts[0] * edges[0] - sums[0]) / n  # integral of F over (-inf, edges[0])
    above = (sums[-1] - counts[-1] * edges[-1]) / n  # integral of 1 - F over [edges[-1], inf)
    return np.concatenate([[below], inner, [above]])


def wasserstein(
    edges: np.ndarray,
    base_counts: np.ndarray,
    base_sums: np.ndarray,
    counts: np.ndarray,
    sums: np.ndarray,
) -> float:
    """The first Wasserstein distance, ``integral |F_base - F_window| dx``, bin by bin."""
    edges = np.asarray(edges, float)
    base_counts, counts = np.asarray(base_counts, float), np.asarray(counts, float)
    if not len(edges) or not base_counts.sum() or not counts.sum():
        return math.nan
    base = _integrals(edges, base_counts, np.asarray(base_sums, float))
    window = _integrals(edges, counts, np.asarray(sums, float))
    # Below the first edge and from the last, the baseline has no mass beyond its extremes.
    return float(np.abs(base[1:-1] - window[1:-1]).sum() + abs(window[0]) + abs(window[-1]))


def normalized_wasserstein(distance_: float, base_std: float | None) -> float:
    """Wasserstein distance in units of the baseline's standard deviation."""
    if math.isnan(distance_) or base_std is None:
        return math.nan
    if base_std == 0:
        return 0.0 if distance_ == 0 else math.inf
    return distance_ / base_std


def psi_groups(base_counts: np.ndarray, groups: int = PSI_BINS) -> np.ndarray:
    """Which of ``groups`` bins of (about) equal baseline mass each fine bin belongs to."""
    base = np.asarray(base_counts, float)
    share = np.cumsum(base) / base.sum()
    return np.minimum((share * groups - 1e-9).astype(int).clip(0), groups - 1)


def psi(base_counts: np.ndarray, counts: np.ndarray, groups: int = PSI_BINS) -> float:
    """Population stability index: sum (w - b) ln(w / b) over bins of equal baseline mass."""
    base, window = np.asarray(base_counts, float), np.asarray(counts, float)
    if not base.sum() or not window.sum():
        return math.nan
    group = psi_groups(base, groups)
    b = np.bincount(group, weights=base, minlength=groups) / base.sum()
    w = np.bincount(group, weights=window, minlength=groups) / window.sum()
    return psi_of_shares(b, w)


def psi_of_shares(b: np.ndarray, w: np.ndarray) -> float:
    b, w = np.clip(b, PSI_EPSILON, None), np.clip(w, PSI_EPSILON, None)
    return float(np.sum((w - b) * np.log(w / b)))


def shares(
    base: Mapping[str, int], window: Mapping[str, int]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Both frequency tables on the union of their categories, as counts."""
    names = sorted(set(base) | set(window))
    return (
        names,
        np.array([base.get(k, 0) for k in names], float),
        np.array([window.get(k, 0) for k in names], float),
    )


def jensen_shannon(base: Mapping[str, int], window: Mapping[str, int]) -> float:
    """Jensen-Shannon distance of two frequency tables (natural log, as scipy and Evidently)."""
    from scipy.spatial import distance

    _, b, w = shares(base, window)
    if not b.sum() or not w.sum():
        return math.nan
    return float(distance.jensenshannon(b / b.sum(), w / w.sum()))


def chi_squared(base: Mapping[str, int], window: Mapping[str, int]) -> tuple[float, float]:
    """Pearson's chi-squared test of the window's counts against the baseline's frequencies:
    (statistic, p-value). A category the baseline never had makes it (inf, 0.0)."""
    names, b, w = shares(base, window)
    if not b.sum() or not w.sum():
        return math.nan, math.nan
    if (w[b == 0] > 0).any():
        return math.inf, 0.0
    seen = b > 0
    if seen.sum() < 2:
        return 0.0, 1.0
    from scipy import stats as sps

    expected = b[seen] / b.sum() * w.sum()
    result = sps.chisquare(w[seen], expected)
    return float(result.statistic), float(result.pvalue)
