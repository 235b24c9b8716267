"""The baseline profile: what monitoring needs to know of the training data, saved with the model.

Per feature (and per prediction column): its kind, count and missing count, min, max, mean and
standard deviation, and either

- numeric: a histogram on fine bins. The edges are the feature's distinct values when there are
  at most ``MAX_EDGES`` of them, else its quantiles; each bin keeps its count and the sum of its
  values. Bin 0 is ``x < edges[0]``, bin j is ``edges[j-1] <= x < edges[j]``, and the last bin
  is ``x >= edges[-1]`` (the maximum); with how many values equal each edge. Every drift
  statistic of ``stats`` is computed from two such histograms, so a window of any size is
  compared in one pass, in bounded memory; or
- categorical: the frequency of each category (the ``MAX_CATEGORIES`` most frequent, the rest
  counted together as ``other``).

The profile is JSON (``baseline.json``), a few tens of kilobytes, logged as one of the model's
files: versioned with it, covered by its sha256, and listed in the deploy package's manifest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nbmill.errors import NbmillError

MAX_EDGES = 200
MAX_CATEGORIES = 100
SIGNIFICANT = 10  # digits kept of each float


def _round(values: np.ndarray) -> list[float]:
    return [float(f"{v:.{SIGNIFICANT}g}") for v in np.asarray(values, dtype=float).tolist()]


class NumericProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["numeric"] = "numeric"
    count: int  # values present
    missing: int
    min: float | None
    max: float | None
    mean: float | None
    std: float | None
    edges: list[float]
    counts: list[int]  # len(edges) + 1 bins
    sums: list[float]
    ties: list[int]  # values equal to each edge

    @property
    def rows(self) -> int:
        return self.count + self.missing


class CategoricalProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["categorical"] = "categorical"
    count: int
    missing: int
    categories: dict[str, int]
    other: int = 0  # values of the categories beyond the MAX_CATEGORIES most frequent

    @property
    def rows(self) -> int:
        return self.count + self.missing


FeatureProfile = Annotated[NumericProfile | CategoricalProfile, Field(discriminator="kind")]


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Literal["nbmill.baseline/1"] = "nbmill.baseline/1"
    rows: int
    features: dict[str, FeatureProfile]
    predictions: dict[str, FeatureProfile] = {}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Profile:
        path = Path(path)
        try:
            return cls.model_validate_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NbmillError(
                f"{path}: no baseline profile; log the model with one "
                "(nbmill.monitor.profile_frame(...).save(...), passed as an extra file)"
            ) from None
        except ValidationError as exc:
            raise NbmillError(f"{path}: not a valid baseline profile: {exc}") from None


def profile_numeric(values: Any) -> NumericProfile:
    """A numeric column's profile (NaN and None are missing)."""
    x = np.asarray(values, dtype=float).ravel()
    present = np.sort(x[~np.isnan(x)])  # one sort: distinct values, quantiles, extremes
    missing = len(x) - len(present)
    if not len(present):
        return NumericProfile(
            count=0, missing=missing, min=None, max=None, mean=None, std=None,
            edges=[], counts=[0], sums=[0.0], ties=[],
        )  # fmt: skip
    starts = np.flatnonzero(np.diff(present)) + 1
    if len(starts) + 1 <= MAX_EDGES:
        edges = present[np.concatenate([[0], starts])]  # its values: exact statistics
    else:  # quantiles, shortened (they are not values, so nothing is lost)
        positions = np.linspace(0, len(present) - 1, MAX_EDGES)
        low = np.floor(positions).astype(int)
        high = np.minimum(low + 1, len(present) - 1)
        quantiles = present[low] + (present[high] - present[low]) * (positions - low)
        edges = np.unique(_round(quantiles))
        edges[0], edges[-1] = present[0], present[-1]
    counts, sums, ties = histogram(present, edges, ordered=True)
    return NumericProfile(
        count=len(present),
        missing=missing,
        min=float(present[0]),
        max=float(present[-1]),
        mean=float(present.mean()),
        std=float(present.std()),
        edges=edges.tolist(),
        counts=counts.tolist(),
        sums=_round(sums),
        ties=ties.tolist(),
    )


def histogram(
    present: np.ndarray, edges: np.ndarray, ordered: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts and sums of ``present`` (no NaN) in the bins of ``edges`` (see the module), and
    how many values equal each edge. The values are sorted (unless ``ordered`` says they are),
    then searched once per edge: faster than a search per value into the edges."""
    ordered_values = present if ordered else np.sort(present)
    below = np.searchsorted(ordered_values, edges, side="left")  # values < each edge
    bounds = np.concatenate([[0], below, [len(ordered_values)]])
    running = np.concatenate([[0.0], np.cumsum(ordered_values)])
    return (
        np.diff(bounds).astype(np.int64),
        np.diff(running[bounds]),
        (np.searchsorted(ordered_values, edges, side="right") - below).astype(np.int64),
    )


def profile_categorical(values: Any) -> CategoricalProfile:
    """A categorical column's profile (None and NaN are missing; values are compared as text)."""
    counts = value_counts(values)
    missing = counts.pop(None, 0)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return CategoricalProfile(
        count=sum(counts.values()),
        missing=missing,
        categories=dict(ranked[:MAX_CATEGORIES]),
        other=sum(count for _, count in ranked[MAX_CATEGORIES:]),
    )


def value_counts(values: Any) -> dict[str | None, int]:
    """{category as text: count}, None for the missing: pyarrow's value_counts, vectorised
    (a pyarrow array, or anything pyarrow or pandas takes)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        import pandas as pd

        series = pd.Series(values, dtype="object")
        values = pa.array(series.where(series.notna(), None).astype(str).where(series.notna()))
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        values = pc.cast(values, pa.string())
    counted = pc.value_counts(values)
    return dict(
        zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist(), strict=True)
    )


def is_categorical(values: Any) -> bool:
    """Numbers (not booleans) are numeric; text, booleans and categories are categorical."""
    import pandas as pd

    series = pd.Series(values) if not isinstance(values, pd.Series) else values
    return not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)


def profile_column(values: Any, categorical: bool | None = None) -> FeatureProfile:
    if categorical is None:
        categorical = is_categorical(values)
    return profile_categorical(values) if categorical else profile_numeric(values)


def profile_frame(
    frame: Any,
    predictions: Any = None,
    categorical: list[str] | None = None,
) -> Profile:
    """The baseline profile of a training table (pandas DataFrame) and, optionally, of the
    model's predictions on it. ``categorical`` names columns to treat as categories whatever
    their dtype; otherwise numbers are numeric and everything else categorical."""
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        raise NbmillError(f"profile_frame: expected a pandas DataFrame, got {type(frame).__name__}")
    if not len(frame.columns):
        raise NbmillError("profile_frame: the table has no columns")
    unknown = sorted(set(categorical or ()) - set(frame.columns))
    if unknown:
        raise NbmillError(f"profile_frame: categorical columns not in the table: {unknown}")
    forced = set(categorical or ())
    features = {
        str(name): profile_column(frame[name], True if name in forced else None)
        for name in frame.columns
    }
    return Profile(rows=len(frame), features=features, predictions=_predictions(predictions))


def _predictions(predictions: Any) -> dict[str, FeatureProfile]:
    from nbmill.collection import PREDICTION

    if predictions is None:
        return {}
    import pandas as pd

    if isinstance(predictions, pd.DataFrame):
        return {str(c): profile_column(predictions[c]) for c in predictions.columns}
    array = np.asarray(predictions)
    if array.ndim == 1 or (array.ndim == 2 and array.shape[1] == 1):
        return {PREDICTION: profile_column(pd.Series(array.ravel()))}
    return {
        f"{PREDICTION}_{i}": profile_column(pd.Series(array[:, i])) for i in range(array.shape[1])
    }


def summary(profile: Profile) -> list[dict[str, Any]]:
    """One row per feature and prediction column, for a reviewer."""
    rows = []
    for role, group in (("feature", profile.features), ("prediction", profile.predictions)):
        for name, p in group.items():
            row: dict[str, Any] = {"column": name, "role": role, "kind": p.kind}
            row["rows"], row["missing"] = p.rows, p.missing
            if isinstance(p, NumericProfile):
                row.update(min=p.min, max=p.max, mean=p.mean, std=p.std, bins=len(p.counts))
            else:
                row.update(categories=len(p.categories) + (1 if p.other else 0))
            rows.append(row)
    return rows
