"""Monitoring, as specifications: each statistic against scipy, the verdict on unshifted and
shifted samples, data quality, health, and reading collected files (local and Azure ML's)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from scipy.spatial import distance

from nbmill.collection import find_baseline
from nbmill.errors import NbmillError
from nbmill.monitor import collected, stats
from nbmill.monitor.checks import window_of
from nbmill.monitor.profile import (
    MAX_EDGES,
    Profile,
    profile_categorical,
    profile_frame,
    profile_numeric,
)
from nbmill.monitor.thresholds import Thresholds, thresholds
from nbmill.monitor.verdict import DRIFT, HEALTH, QUALITY, Monitor, compare
from nbmill.monitor.window import CategoricalWindow, NumericWindow
from nbmill.serving.collect import Collector, Deployment, Scored

RNG = np.random.default_rng(11)


@pytest.fixture(autouse=True)
def _same_draws_in_any_order():
    """Each test draws from RNG as if it ran first: its samples do not depend on test order."""
    RNG.bit_generator.state = np.random.default_rng(11).bit_generator.state


def numeric_drift(base: np.ndarray, window: np.ndarray) -> dict[str, float]:
    accumulated = NumericWindow(profile_numeric(base))
    for chunk in np.array_split(window, 3):  # chunk by chunk, as a large window is read
        accumulated.update(chunk)
    return accumulated.drift()


# --- each statistic against scipy ---------------------------------------------------------------


@pytest.mark.parametrize(("n", "m", "shift"), [(120, 80, 0.0), (150, 300, 0.6), (60, 1000, 0.2)])
def test_kolmogorov_smirnov_equals_scipy_when_the_baseline_has_few_distinct_values(n, m, shift):
    base, window = RNG.normal(size=n), RNG.normal(loc=shift, size=m)
    assert n <= MAX_EDGES  # its edges are its values: the statistic is exact
    got = numeric_drift(base, window)
    want = sps.ks_2samp(base, window, method="asymp")
    assert got["ks_statistic"] == pytest.approx(want.statistic, abs=1e-12)
    assert got["two_sample_kolmogorov_smirnov_test"] == pytest.approx(want.pvalue, rel=1e-9)


def test_kolmogorov_smirnov_on_quantile_bins_is_within_a_bin_of_scipy():
    base, window = RNG.lognormal(size=20_000), RNG.lognormal(mean=0.1, size=5_000)
    got = numeric_drift(base, window)["ks_statistic"]
    assert got == pytest.approx(sps.ks_2samp(base, window).statistic, abs=1.5 / MAX_EDGES)


@pytest.mark.parametrize(
    ("base", "window"),
    [
        (RNG.normal(size=150), RNG.normal(loc=0.5, size=300)),
        (RNG.exponential(size=5000), RNG.exponential(scale=1.3, size=3000)),
        (RNG.uniform(size=400), RNG.uniform(-0.5, 1.5, size=400)),  # mass beyond both ends
    ],
)
def test_wasserstein_and_its_normalised_form_match_scipy(base, window):
    got = numeric_drift(base, window)
    want = sps.wasserstein_distance(base, window)
    assert got["wasserstein_distance"] == pytest.approx(want, rel=0.02)
    assert got["normalized_wasserstein_distance"] == pytest.approx(want / base.std(), rel=0.02)


def test_population_stability_index_matches_its_formula_on_decile_bins():
    base = np.arange(200.0)  # its values are its edges: the deciles are exact
    window = np.concatenate([np.arange(100.0), np.full(100, 190.0)])  # half in the top decile
    expected_shares = np.full(10, 0.1)
    window_shares = np.array([0.1] * 5 + [0.0] * 4 + [0.5])
    clipped = np.clip(window_shares, stats.PSI_EPSILON, None)
    want = float(np.sum((clipped - expected_shares) * np.log(clipped / expected_shares)))
    assert numeric_drift(base, window)["population_stability_index"] == pytest.approx(want)


def test_jensen_shannon_and_chi_squared_match_scipy():
    base = RNG.choice(list("abcd"), p=[0.4, 0.3, 0.2, 0.1], size=2000)
    window = RNG.choice(list("abcd"), p=[0.25, 0.25, 0.25, 0.25], size=700)
    accumulated = CategoricalWindow(profile_categorical(base))
    accumulated.update(list(window))
    got = accumulated.drift()
    p = np.array([(base == k).mean() for k in "abcd"])
    q = np.array([(window == k).mean() for k in "abcd"])
    assert got["jensen_shannon_distance"] == pytest.approx(distance.jensenshannon(p, q))
    observed = [(window == k).sum() for k in "abcd"]
    want = sps.chisquare(observed, p * len(window))
    assert got["chi_squared_statistic"] == pytest.approx(want.statistic)
    assert got["pearsons_chi_squared_test"] == pytest.approx(want.pvalue)


def test_a_category_the_baseline_never_had_is_unseen_and_fails_chi_squared():
    accumulated = CategoricalWindow(profile_categorical(["a", "b"] * 50))
    accumulated.update(["a", "b", "zebra", None])
    assert accumulated.unseen() == {"zebra": 1}
    assert accumulated.drift()["pearsons_chi_squared_test"] == 0.0
    assert accumulated.missing == 1 and accumulated.rows == 4


# --- the verdict --------------------------------------------------------------------------------


def training_table(rows: int, rng: np.random.Generator = RNG) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": rng.normal(50, 10, rows),
            "income": rng.lognormal(10, 0.5, rows),
            "score": rng.uniform(0, 1, rows),
            "plan": rng.choice(["basic", "plus", "pro"], p=[0.6, 0.3, 0.1], size=rows),
        }
    )


def judged(profile: Profile, table: pd.DataFrame, limits: Thresholds | None = None):
    monitor = Monitor(profile, limits)
    columns = {
        name: collected.Column(
            table[name].to_numpy(float)
            if profile.features[name].kind == "numeric"
            else table[name].tolist()
        )
        for name in table.columns
        if name in profile.features
    }
    monitor.add_rows(columns)
    return monitor.result()


@pytest.mark.parametrize("rows", [800, 20_000])  # p-values for the small window, distances after
def test_a_sample_of_the_training_data_itself_shows_no_drift(rows):
    train = training_table(50_000)
    result = judged(profile_frame(train), train.sample(rows, random_state=3))
    assert result.drifted == []
    expected = "two_sample_kolmogorov_smirnov_test" if rows <= 1000 else "normalized_wasserstein"
    assert all(r["metric"].startswith(expected) for r in result.drift if r["kind"] == "numeric")


@pytest.mark.parametrize("rows", [800, 20_000])
def test_a_shifted_sample_drifts_on_the_shifted_features_only(rows):
    train = training_table(50_000)
    window = training_table(rows)
    window["age"] += 8  # 0.8 standard deviations
    window["plan"] = RNG.choice(["basic", "plus", "pro"], p=[0.2, 0.3, 0.5], size=rows)
    result = judged(profile_frame(train), window)
    assert sorted(result.drifted) == ["age", "plan"]
    (alert,) = [a for a in result.alerts if a["type"] == DRIFT]
    assert sorted(alert["features"]) == ["age", "plan"]


def test_every_threshold_is_a_parameter():
    # 20,000 rows each, from their own seed: the distance is 0.15 +- 0.01, five standard
    # deviations from either threshold, whatever order the tests run in.
    rng = np.random.default_rng(20)
    train = training_table(20_000, rng)
    window = training_table(20_000, rng)
    window["age"] += 1.5  # 0.15 sd: drift at the default 0.1, not at 0.2
    profile = profile_frame(train)
    assert "age" in judged(profile, window).drifted
    relaxed = thresholds({"normalized_wasserstein_distance": 0.2})
    assert "age" not in judged(profile, window, relaxed).drifted
    by_psi = thresholds({"numerical_metric": "population_stability_index"})
    assert next(r for r in judged(profile, window, by_psi).drift)["metric"] == (
        "population_stability_index"
    )


def test_bad_thresholds_are_named():
    with pytest.raises(NbmillError, match="jensen_shannon_distance: Input should be a valid"):
        thresholds({"jensen_shannon_distance": "high"})
    with pytest.raises(NbmillError, match="wasserstein: Extra inputs are not permitted"):
        thresholds({"wasserstein": 0.1})
    with pytest.raises(NbmillError, match="must be 0 or more"):
        thresholds({"null_value_rate": -1})


def test_data_quality_reports_missing_out_of_range_unseen_and_mistyped_values():
    train = training_table(2000)
    window = training_table(100)
    window.loc[:9, "income"] = np.nan
    window.loc[:4, "score"] = 5.0  # past the training maximum
    window.loc[:1, "plan"] = "enterprise"
    profile = profile_frame(train)
    monitor = Monitor(profile)
    columns = {
        "age": collected.Column(window["age"].to_numpy(float)),
        "income": collected.Column(window["income"].to_numpy(float)),
        "score": collected.Column(window["score"].to_numpy(float)),
        "plan": collected.Column(window["plan"].tolist()),
    }
    monitor.add_rows(columns)
    monitor.add_rows({"age": collected.Column(np.array([np.nan]), type_errors=1)}, scored=False)
    quality = {row["column"]: row for row in monitor.result().quality}
    assert quality["income"]["null_value_rate"] == pytest.approx(0.1)
    assert quality["score"]["out_of_bounds_rate"] == pytest.approx(0.05)
    assert quality["plan"]["out_of_bounds_rate"] == pytest.approx(0.02)
    assert "enterprise" in quality["plan"]["note"]
    assert quality["age"]["data_type_error_rate"] == pytest.approx(1 / 101)
    assert quality["age"]["breaches"] == ["data_type_error_rate"]


def test_a_missing_column_is_reported_not_crashed_on():
    train = training_table(2000)
    window = training_table(300).drop(columns=["income"])
    monitor = Monitor(profile_frame(train))
    columns = {n: collected.Column(window[n].to_numpy(float)) for n in ("age", "score")}
    columns["plan"] = collected.Column(window["plan"].tolist())
    columns["income"] = collected.Column(np.full(300, np.nan))  # what the reader gives
    monitor.add_rows(columns)
    result = monitor.result()
    income = next(r for r in result.quality if r["column"] == "income")
    assert income["null_value_rate"] == 1.0 and "not sent" in income["note"]
    drift = next(r for r in result.drift if r["column"] == "income")
    assert drift["drifted"] is False and drift["note"] == "no values in the window"


def test_an_empty_window_says_what_to_do():
    with pytest.raises(NbmillError, match="no collected requests in .*nbmill traffic"):
        Monitor(profile_frame(training_table(100))).result({"endpoint": "e"})
    with pytest.raises(NbmillError, match="the window is empty"):
        window_of(None, "2026-12-02T00:00Z", "2026-12-01T00:00Z")
    with pytest.raises(NbmillError, match="not an ISO 8601 time"):
        window_of(None, "yesterday", None)


# --- the baseline -------------------------------------------------------------------------------


def test_the_baseline_is_small_json_that_loads_back_validated(tmp_path):
    train = training_table(100_000)
    profile = profile_frame(train, predictions=train["age"] * 2)
    path = profile.save(tmp_path / "model" / "extra_files" / "baseline.json")
    assert path.stat().st_size < 40_000
    assert find_baseline(tmp_path / "model") == path
    again = Profile.load(path)
    assert again == profile and set(again.predictions) == {"prediction"}
    path.write_text(json.dumps({"rows": 1, "features": {"a": {"kind": "numeric"}}}))
    with pytest.raises(NbmillError, match="not a valid baseline profile"):
        Profile.load(path)
    with pytest.raises(NbmillError, match="has no baseline.json"):
        find_baseline(tmp_path / "nothing")


# --- health -------------------------------------------------------------------------------------


def test_health_counts_errors_refusals_and_latency_from_the_requests():
    import pyarrow as pa

    monitor = Monitor(profile_frame(training_table(100)))
    statuses = [200] * 90 + [400] * 6 + [500] * 4
    monitor.add_requests(
        pa.table(
            {
                "status": statuses,
                "latencyms": [float(i) for i in range(100)],
                "modelversion": ["3"] * 100,
            }
        )
    )
    result = monitor.result()
    assert result.health["error_rate"] == pytest.approx(0.04)
    assert result.health["refused_rate"] == pytest.approx(0.06)
    assert result.health["latency_p99_ms"] == pytest.approx(np.percentile(range(100), 99))
    assert result.health["breaches"] == ["error_rate", "refused_rate"]
    assert [a["type"] for a in result.alerts] == [HEALTH]
    assert result.window["versions"] == {"3": 100}


# --- reading collected files --------------------------------------------------------------------

HOUR = datetime(2026, 12, 1, 12, tzinfo=UTC)


def collect(tmp_path: Path, items: list[Scored], columns=("age", "income", "score")) -> Path:
    where = Deployment("ep", "blue", tuple(columns), "m", "1", None, instance="i0")
    collector = Collector(tmp_path, where, flush_s=3600)
    for item in items:
        collector.add(item)
    collector.close()
    return tmp_path


def test_collected_files_are_read_in_the_window_only(tmp_path):
    at = HOUR.timestamp()
    items = [
        Scored(at + h * 3600 + 60, 200, 0.002, f"r{h}", np.array([[h, 1.0, 0.5]]), np.array([h]))
        for h in range(4)
    ]
    collect(tmp_path, items)
    kinds = {"age": "numeric", "income": "numeric", "score": "numeric"}
    since, until = HOUR + timedelta(hours=1), HOUR + timedelta(hours=3)
    chunks = list(collected.chunks(tmp_path, "ep", kinds, since=since, until=until))
    assert len(chunks) == 2
    assert [c.scored["age"].values.tolist() for c in chunks] == [[1.0], [2.0]]
    assert collected.files(tmp_path, "ep", since=since, until=until)[0].parts[-5:-1] == (
        "2026", "12", "01", "13",
    )  # fmt: skip
    with pytest.raises(NbmillError, match="nothing collected for endpoint 'other'"):
        collected.files(tmp_path, "other")


def test_mistyped_values_sent_by_clients_are_counted_as_type_errors(tmp_path):
    at = HOUR.timestamp()
    good = Scored(at, 200, 0.001, "a", np.array([[1.0, 2.0, 0.1]]), np.array([5.0]))
    refused = Scored(
        at, 400, 0.001, "b", error="row 0, column 'age': expected a number",
        sent=(["age", "income", "score"], [["old", None, 0.2]]),
    )  # fmt: skip
    collect(tmp_path, [good, refused])
    kinds = {"age": "numeric", "income": "numeric", "score": "numeric"}
    (chunk,) = collected.chunks(tmp_path, "ep", kinds)
    assert chunk.slow  # pyarrow refused the file's mixed types: read line by line
    assert chunk.refused["age"].type_errors == 1
    assert math.isnan(chunk.refused["income"].values[0])
    assert chunk.scored["age"].values.tolist() == [1.0]
    assert chunk.requests["status"].to_pylist() == [200, 400]


def test_data_collected_by_an_azure_ml_deployment_is_read_the_same_way(tmp_path):
    folder = tmp_path / "ep" / "blue" / "model_inputs" / "2026" / "12" / "01" / "12"
    folder.mkdir(parents=True)
    line = {  # as Azure ML's data collector writes it: no status, latency or model name
        "specversion": "1.0",
        "id": "725aa8af-0834-415c-aaf5-c76d0c08f694",
        "source": "/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices"
        "/workspaces/w/onlineEndpoints/ep/deployments/blue",
        "type": "azureml.inference.model_inputs",
        "datacontenttype": "application/json",
        "time": "2026-12-01T12:51:30Z",
        "data": [{"age": 41, "income": 30000.5, "score": 0.3}, {"age": 39, "score": 0.9}],
        "correlationid": "aaaa0000-bb11-2222-33cc-444444dddddd",
        "xrequestid": "aaaa0000-bb11-2222-33cc-444444dddddd",
        "modelversion": "default",
        "collectdatatype": "pandas.core.frame.DataFrame",
        "agent": "monitoring-sdk/0.1.2",
        "contentrange": "bytes 0-116/116",
    }
    (folder / "blue-abc.jsonl").write_text(json.dumps(line) + "\n")
    kinds = {"age": "numeric", "income": "numeric", "score": "numeric"}
    (chunk,) = collected.chunks(tmp_path, "ep", kinds)
    assert chunk.scored["age"].values.tolist() == [41.0, 39.0]
    assert math.isnan(chunk.scored["income"].values[1])
    assert chunk.requests["status"].to_pylist() == [200]  # what Azure kept was scored


def test_compare_judges_collected_chunks_end_to_end(tmp_path):
    train = training_table(5000)[["age", "income", "score"]]
    profile = profile_frame(train, predictions=train["age"])
    shifted = training_table(300)[["age", "income", "score"]]
    shifted["score"] += 0.5
    at = HOUR.timestamp()
    items = [
        Scored(at + i, 200, 0.001, f"r{i}", row[None, :], row[:1])
        for i, row in enumerate(shifted.to_numpy())
    ]
    collect(tmp_path, items)
    kinds = {n: "numeric" for n in train.columns}
    result = compare(
        profile,
        collected.chunks(tmp_path, "ep", kinds),
        collected.chunks(tmp_path, "ep", {"prediction": "numeric"}, "model_outputs"),
    )
    assert result.drifted == ["score"]
    assert result.window["requests"] == 300 and result.window["rows"] == 300
    assert [a["type"] for a in result.alerts] == [DRIFT, QUALITY]  # and score is out of range
    assert set(result.shares) == {"score"} and len(result.shares["score"]["bounds"]) > 2
