"""What counts as drift, a data-quality breach and poor health: every threshold a parameter.

The defaults are Azure ML model monitoring's (azure-ai-ml ``entities/_monitoring``), so that a
local verdict and an Azure ML monitor agree: numerical drift by normalised Wasserstein distance
over 0.1, categorical by Jensen-Shannon distance over 0.1, data-quality rates over 0.0. A
window of ``small_window_rows`` rows or fewer, where distances are noisy, is judged by tests'
p-values instead (Kolmogorov-Smirnov and chi-squared, below 0.05), as Evidently does.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from nbmill.errors import NbmillError

NumericalMetric = Literal[
    "normalized_wasserstein_distance",
    "population_stability_index",
    "two_sample_kolmogorov_smirnov_test",
]
CategoricalMetric = Literal[
    "jensen_shannon_distance", "population_stability_index", "pearsons_chi_squared_test"
]
PVALUES = {"two_sample_kolmogorov_smirnov_test", "pearsons_chi_squared_test"}  # drift: below


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")
    numerical_metric: NumericalMetric = "normalized_wasserstein_distance"
    categorical_metric: CategoricalMetric = "jensen_shannon_distance"
    normalized_wasserstein_distance: float = 0.1
    jensen_shannon_distance: float = 0.1
    population_stability_index: float = 0.2
    two_sample_kolmogorov_smirnov_test: float = 0.05
    pearsons_chi_squared_test: float = 0.05
    small_window_rows: int = 1000
    null_value_rate: float = 0.0
    data_type_error_rate: float = 0.0
    out_of_bounds_rate: float = 0.0
    error_rate: float = 0.01  # answers 5xx, of all requests
    refused_rate: float = 0.05  # answers 4xx (bad input), of all requests
    latency_p99_ms: float = 1000.0

    @field_validator("*")
    @classmethod
    def _not_negative(cls, value: Any) -> Any:
        if isinstance(value, int | float) and value < 0:
            raise ValueError("must be 0 or more")
        return value

    def breached(self, metric: str, value: float) -> bool:
        """Whether ``value`` of ``metric`` crosses its threshold (p-values: below it)."""
        limit = getattr(self, metric)
        if value != value:  # NaN: nothing to judge
            return False
        return value < limit if metric in PVALUES else value > limit

    def metric_for(self, kind: str, rows: int) -> str:
        small = rows <= self.small_window_rows
        if kind == "numeric":
            return "two_sample_kolmogorov_smirnov_test" if small else self.numerical_metric
        return "pearsons_chi_squared_test" if small else self.categorical_metric


def thresholds(values: dict[str, Any] | None = None) -> Thresholds:
    """Thresholds from a params mapping, with an error naming the bad key."""
    try:
        return Thresholds(**(values or {}))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'thresholds'}: {e['msg']}" for e in exc.errors()
        )
        raise NbmillError(f"monitoring thresholds: {problems}") from None
