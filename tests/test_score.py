"""``nbmill score``: batch scoring of a file, chunked over processes, its chunks collected as
online requests are, a bad cell named by row and column with the rows before it kept."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from nbmill import collection
from nbmill.serving.batch import ScoreError, score_file
from nbmill_example import diabetes
from tests.conftest import nbmill, saved_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    saved = saved_model(tmp_path_factory.mktemp("model"))
    frame = pd.concat([saved["test"][diabetes.FEATURES]] * 12, ignore_index=True)  # 1068 rows
    return {"dir": saved["dir"], "fitted": saved["fitted"], "frame": frame}


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_every_row_is_scored_in_order_as_the_model_scores_it(model, tmp_path, suffix):
    source = tmp_path / f"in{suffix}"
    getattr(model["frame"], "to_csv" if suffix == ".csv" else "to_parquet")(source, index=False)
    out = tmp_path / f"out{suffix}"
    done = score_file(str(model["dir"]), tmp_path, source, out, chunk_rows=100, workers=2)
    assert (done.rows, done.chunks, done.workers) == (1068, 11, 2)
    written = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    expected = model["fitted"].predict(model["frame"][diabetes.FEATURES].to_numpy(dtype=float))
    np.testing.assert_allclose(written[collection.PREDICTION].to_numpy(), expected, rtol=1e-9)
    pd.testing.assert_frame_equal(written[diabetes.FEATURES], model["frame"], check_dtype=False)


def test_each_chunk_is_collected_as_an_online_request_is(model, tmp_path):
    source = tmp_path / "in.csv"
    model["frame"].head(250).to_csv(source, index=False)
    collected = tmp_path / "collected"
    done = score_file(str(model["dir"]), tmp_path, source, tmp_path / "out.csv",
                      collect_dir=collected, chunk_rows=100, workers=2)  # fmt: skip
    inputs = collection.read_lines(collected, collection.INPUTS)
    outputs = collection.read_lines(collected, collection.OUTPUTS)
    assert len(inputs) == len(outputs) == done.chunks == 3
    assert sum(len(line["data"]) for line in inputs) == 250
    ids = [line["correlationid"] for line in inputs]
    assert len(set(ids)) == 3 and {o["correlationid"] for o in outputs} == set(ids)
    assert {line["source"].rsplit("/", 1)[-1] for line in inputs} == {"batch"}


def test_a_bad_cell_is_named_by_row_and_column_and_the_rows_before_it_are_kept(model, tmp_path):
    frame = model["frame"].astype(object)
    frame.loc[437, "bmi"] = "n/a"
    source = tmp_path / "in.csv"
    frame.to_csv(source, index=False)
    out = tmp_path / "out.csv"
    with pytest.raises(ScoreError, match=r"row 437, column 'bmi': 'n/a' is not a finite number"):
        score_file(str(model["dir"]), tmp_path, source, out, chunk_rows=100, workers=2)
    kept = pd.read_csv(out)
    assert len(kept) == 437  # rows 0..436: the four chunks before and the 37 rows before it
    expected = model["fitted"].predict(model["frame"].head(437).to_numpy(dtype=float))
    np.testing.assert_allclose(kept[collection.PREDICTION].to_numpy(), expected, rtol=1e-9)


def test_an_empty_cell_and_a_missing_column_are_named(model, tmp_path):
    frame = model["frame"].head(10).copy()
    frame.loc[3, "age"] = np.nan
    frame.to_csv(tmp_path / "empty.csv", index=False)
    with pytest.raises(ScoreError, match=r"row 3, column 'age': is empty"):
        score_file(str(model["dir"]), tmp_path, tmp_path / "empty.csv", tmp_path / "o.csv")
    frame.drop(columns=["s6"]).to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(ScoreError, match=r"column 's6' is missing"):
        score_file(str(model["dir"]), tmp_path, tmp_path / "short.csv", tmp_path / "o.csv")


def test_the_command_line_prints_what_it_scored(model, tmp_path):
    (tmp_path / "pipelines").mkdir()
    model["frame"].to_parquet(tmp_path / "in.parquet", index=False)
    done = nbmill("score", str(model["dir"]), "--input", "in.parquet", "--output", "out.csv",
                  "--no-collect", "--json", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["rows"] == 1068 and result["rows_per_s"] > 0 and result["collected"] is None
    refused = nbmill("score", str(model["dir"]), "--input", "in.txt", "--output", "out.csv",
                     cwd=tmp_path)  # fmt: skip
    assert refused.returncode == 1 and "in.txt: no such file" in refused.stderr
