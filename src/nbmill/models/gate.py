"""The promotion gate (pure): does a candidate beat production on the gate's metric?"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from nbmill.errors import NbmillError

PRODUCTION = "production"
STAGING = "staging"


@dataclass(frozen=True)
class Decision:
    """The gate's verdict on one candidate version.

    ``delta`` is candidate minus production in the metric's units (negative is an improvement
    when lower is better); ``improvement`` is the same gap signed so that positive is better.
    """

    model: str
    candidate_version: str
    promoted: bool
    reason: str
    metric: str
    greater_is_better: bool
    min_improvement: float
    candidate_score: float
    production_version: str | None = None
    production_score: float | None = None
    delta: float | None = None

    @property
    def improvement(self) -> float | None:
        if self.delta is None:
            return None
        return self.delta if self.greater_is_better else -self.delta

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "improvement": self.improvement}

    def _repr_markdown_(self) -> str:
        """How a notebook shows it: the verdict and why, then the numbers."""

        def number(value: float | None) -> str:
            return "–" if value is None else f"{value:.4f}"

        verdict = "promoted" if self.promoted else "not promoted"
        production = "none"
        if self.production_version is not None:
            production = f"v{self.production_version}: {number(self.production_score)}"
        rows = [
            ("model", self.model),
            ("candidate", f"v{self.candidate_version}: {number(self.candidate_score)}"),
            ("production", production),
            ("improvement", number(self.improvement)),
            ("required", f"more than {self.min_improvement:g}"),
            ("better", "higher" if self.greater_is_better else "lower"),
        ]
        table = "\n".join(f"| {key} | {value} |" for key, value in rows)
        why = self.reason.removeprefix("not promoted: ")
        return f"**{verdict}**: {why}\n\n| gate on {self.metric} | |\n|---|---|\n{table}\n"


def gate(
    name: str,
    candidate_version: str,
    candidate_score: float,
    production_score: float | None,
    metric: str,
    greater_is_better: bool,
    min_improvement: float,
    production_version: str | None = None,
) -> Decision:
    """Promote when there is no production score, or when the candidate beats it by strictly
    more than ``min_improvement`` in the metric's better direction."""
    if not math.isfinite(candidate_score):
        raise NbmillError(f"gate: candidate {metric} is {candidate_score}, not a finite number")
    if not (math.isfinite(min_improvement) and min_improvement >= 0):
        raise NbmillError(f"gate: min_improvement must be a number >= 0, got {min_improvement}")
    decide = dict(
        model=name,
        candidate_version=str(candidate_version),
        metric=metric,
        greater_is_better=bool(greater_is_better),
        min_improvement=float(min_improvement),
        candidate_score=float(candidate_score),
    )
    if production_score is None:
        return Decision(promoted=True, reason="no production model yet", **decide)
    if not math.isfinite(production_score):
        raise NbmillError(f"gate: production {metric} is {production_score}, not a finite number")
    delta = float(candidate_score) - float(production_score)
    improvement = delta if greater_is_better else -delta
    better = "higher" if greater_is_better else "lower"
    production = f"production v{production_version}" if production_version else "production"
    promoted = improvement > min_improvement
    if promoted:
        reason = (
            f"{metric} {candidate_score:.4f} beats {production}'s {production_score:.4f} "
            f"by {improvement:.4f} ({better} is better; required: more than {min_improvement:g})"
        )
    else:
        reason = (
            f"not promoted: {metric} {candidate_score:.4f} does not beat {production}'s "
            f"{production_score:.4f} by more than {min_improvement:g} "
            f"(improvement {improvement:+.4f}; {better} is better)"
        )
    return Decision(
        promoted=promoted,
        reason=reason,
        production_version=None if production_version is None else str(production_version),
        production_score=float(production_score),
        delta=delta,
        **decide,
    )
