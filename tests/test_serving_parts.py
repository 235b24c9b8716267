"""The service's parts on their own: batching, Prometheus metrics, collection files, start-up."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nbmill import _hashing
from nbmill.collection import read_lines
from nbmill.models.package import package_model
from nbmill.serving import collect
from nbmill.serving import request as request_module
from nbmill.serving.batching import Batcher
from nbmill.serving.collect import Collector, Deployment, Scored
from nbmill.serving.metrics import Metrics
from nbmill.serving.startup import build_app, prepare
from nbmill_example import diabetes
from tests.conftest import ROOT, saved_model

# --- batching ---------------------------------------------------------------------------------


def test_requests_in_one_turn_of_the_loop_are_scored_in_one_call():
    calls: list[int] = []

    def predict(matrix: np.ndarray) -> np.ndarray:
        calls.append(len(matrix))
        return matrix.sum(axis=1)

    async def score_three():
        batcher = Batcher(predict)
        futures = [batcher.score(np.full((rows, 2), float(rows))) for rows in (1, 2, 3)]
        return [await f for f in futures]

    answers = asyncio.run(score_three())
    assert calls == [6]  # one predict over 1 + 2 + 3 rows
    assert [a.ravel().tolist() for a in answers] == [[2.0], [4.0, 4.0], [6.0, 6.0, 6.0]]


def test_a_model_failure_fails_every_request_of_its_batch_and_the_next_batch_works():
    def predict(matrix: np.ndarray) -> np.ndarray:
        if (matrix < 0).any():
            raise ValueError("negative input")
        return matrix[:, 0]

    async def scenario():
        batcher = Batcher(predict)
        first = [batcher.score(np.array([[1.0]])), batcher.score(np.array([[-1.0]]))]
        results = await asyncio.gather(*first, return_exceptions=True)
        later = await batcher.score(np.array([[5.0]]))
        return results, later

    results, later = asyncio.run(scenario())
    assert all(isinstance(r, ValueError) for r in results)
    assert later.ravel().tolist() == [5.0]


# --- metrics ----------------------------------------------------------------------------------


def sample(text: str, name: str) -> float:
    (line,) = [line for line in text.splitlines() if line.startswith(name + " ")]
    return float(line.rsplit(" ", 1)[1])


def test_metrics_render_counts_errors_rows_and_a_cumulative_histogram(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    metrics = Metrics()
    metrics.observe(200, 0.0004, rows=3)
    metrics.observe(200, 0.003, rows=1)
    metrics.observe(400, 0.2, rows=0)
    text = metrics.render().decode()
    assert sample(text, 'nbmill_requests_total{status="200"}') == 2
    assert sample(text, 'nbmill_requests_total{status="400"}') == 1
    assert sample(text, "nbmill_request_errors_total") == 1
    assert sample(text, "nbmill_rows_scored_total") == 4
    bucket = 'nbmill_request_latency_seconds_bucket{le="%s"}'
    assert sample(text, bucket % "0.0005") == 1
    assert sample(text, bucket % "0.005") == 2
    assert sample(text, bucket % "0.25") == 3 and sample(text, bucket % "+Inf") == 3
    assert sample(text, "nbmill_request_latency_seconds_count") == 3
    assert sample(text, "nbmill_request_latency_seconds_sum") == pytest.approx(0.2034)


def test_two_apps_in_one_process_keep_their_own_counts(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    one, two = Metrics(), Metrics()
    one.observe(200, 0.001, rows=1)
    assert sample(one.render().decode(), 'nbmill_requests_total{status="200"}') == 1
    assert 'status="200"' not in two.render().decode()


# --- collection files -------------------------------------------------------------------------

NOON = 1796126400.0  # 2026-12-01T12:00:00Z
WHERE = Deployment("ep", "blue", ("a", "b"), "m", "3", "production", instance="w1")


def scored(i: float, at: float = NOON, status: int = 200, **fields) -> Scored:
    matrix = np.array([[i, i + 0.5]])
    if status != 200:
        return Scored(at, status, 0.001, f"id-{i}", **fields)
    return Scored(at, status, 0.001, f"id-{i}", matrix, np.array([i * 10]), **fields)


def test_collection_is_in_azure_ml_data_collector_layout(tmp_path):
    collector = Collector(tmp_path, WHERE, flush_s=3600)
    collector.add(scored(1.0))
    collector.close()
    hour = "2026/12/01/12"
    (inputs,) = (tmp_path / "ep/blue/model_inputs").glob(f"{hour}/*.jsonl")
    (outputs,) = (tmp_path / "ep/blue/model_outputs").glob(f"{hour}/*.jsonl")
    assert inputs.name == outputs.name == "w1.jsonl"
    line = json.loads(inputs.read_text())
    assert {
        "specversion", "id", "source", "type", "datacontenttype", "time", "data",
        "correlationid", "xrequestid", "modelversion", "collectdatatype", "agent", "contentrange",
    } <= set(line)  # fmt: skip
    assert line["type"] == "azureml.inference.model_inputs"
    assert line["data"] == [{"a": 1.0, "b": 1.5}]
    assert line["correlationid"] == line["xrequestid"] == "id-1.0"
    assert line["time"] == "2026-12-01T12:00:00.000Z"
    assert (line["modelversion"], line["modelname"], line["modelalias"]) == ("3", "m", "production")
    assert (line["status"], line["latencyms"]) == (200, 1.0)
    data = json.dumps(line["data"], separators=(",", ":"))
    assert line["contentrange"] == f"bytes 0-{len(data) - 1}/{len(data)}"
    out = json.loads(outputs.read_text())
    assert out["type"] == "azureml.inference.model_outputs" and out["data"] == [
        {"prediction": 10.0}
    ]
    assert out["correlationid"] == "id-1.0" and out["id"] != line["id"]


def test_collection_rotates_by_size_and_loses_nothing(tmp_path):
    collector = Collector(tmp_path, WHERE, max_bytes=1500, flush_s=3600)
    for i in range(12):
        collector.add(scored(float(i)))
        collector.flush()
    collector.close()
    files = sorted((tmp_path / "ep/blue/model_inputs/2026/12/01/12").glob("*.jsonl"))
    assert len(files) > 1 and files[0].name == "w1.jsonl" and files[1].name == "w1_0001.jsonl"
    assert all(p.stat().st_size <= 1500 for p in files)
    lines = read_lines(tmp_path)
    assert [line["data"][0]["a"] for line in lines] == [float(i) for i in range(12)]


def test_collection_starts_a_folder_for_each_hour(tmp_path):
    collector = Collector(tmp_path, WHERE, flush_s=3600)
    for hour in range(3):
        collector.add(scored(float(hour), at=NOON + hour * 3600))
    collector.close()
    folders = sorted(p.parent.name for p in (tmp_path / "ep/blue/model_inputs").rglob("*.jsonl"))
    assert folders == ["12", "13", "14"]
    assert [r["time"][:13] for r in read_lines(tmp_path)] == [
        "2026-12-01T12",
        "2026-12-01T13",
        "2026-12-01T14",
    ]


def test_many_rows_in_one_request_are_one_line_of_records(tmp_path):
    collector = Collector(tmp_path, WHERE, flush_s=3600)
    matrix = np.arange(200.0).reshape(100, 2) / 7
    collector.add(Scored(NOON, 200, 0.001, "x", matrix, matrix[:, 0] * 2))
    collector.close()
    (line,) = read_lines(tmp_path)
    assert [[r["a"], r["b"]] for r in line["data"]] == matrix.tolist()  # every digit kept
    (out,) = read_lines(tmp_path, "model_outputs")
    assert [r["prediction"] for r in out["data"]] == (matrix[:, 0] * 2).tolist()


def test_close_writes_what_is_still_buffered(tmp_path):
    collector = Collector(tmp_path, WHERE, flush_s=3600)
    collector.add(scored(2.0))
    collector.close()
    (record,) = read_lines(tmp_path)
    assert record["data"] == [{"a": 2.0, "b": 2.5}] and record["status"] == 200


# --- start-up ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("startup")
    package_model(saved_model(folder)["dir"], folder / "package", ROOT / "environment.yml")
    return folder / "package"


def test_start_up_hashes_each_file_once_and_reads_mlmodel_once(package, tmp_path, monkeypatch):
    monkeypatch.setenv("NBMILL_SERVE_KEY", "k")
    hashed: list[str] = []
    read: list[Path] = []
    real_hash, real_read = _hashing.sha256_file, request_module.read_mlmodel

    def counting_hash(path):
        hashed.append(Path(path).relative_to(package).as_posix())
        return real_hash(path)

    def counting_read(folder):
        read.append(Path(folder))
        return real_read(folder)

    monkeypatch.setattr(_hashing, "sha256_file", counting_hash)
    monkeypatch.setattr("nbmill.serving.startup.read_mlmodel", counting_read)
    with prepare(str(package), tmp_path) as config:
        for _ in range(2):  # what two workers do
            app = build_app(config)
    assert sorted(hashed) == sorted(set(hashed))  # no file twice
    assert "model/MLmodel" in hashed and "environment.yml" in hashed
    assert len(read) == 1
    assert app.signature.columns == tuple(diabetes.FEATURES)
    assert config.identity["sha256"] == _hashing.tree_digest(package / "model")


# --- a bad request costs only itself ----------------------------------------------------------

DEEP = b'{"input_data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def test_json_nested_too_deeply_is_a_400_naming_the_problem():
    from nbmill.serving.request import InputError, Signature, parse_request

    with pytest.raises(InputError, match="nested too deeply") as caught:
        parse_request(DEEP, Signature(("a",), ("double",)))
    assert caught.value.status == 400


def test_a_refused_request_is_collected_with_its_status_error_and_rows_as_sent(tmp_path):
    collector = Collector(tmp_path, WHERE, flush_s=3600)
    sent = (["a", "b"], [["x", None]])
    collector.add(scored(1.0, status=400, error="row 0, column 'a': expected a number", sent=sent))
    collector.add(scored(2.0, status=400, error="the JSON is nested too deeply to read"))
    collector.add(scored(3.0))
    collector.close()
    records = read_lines(tmp_path)
    assert [r["status"] for r in records] == [400, 400, 200]
    assert (
        records[0]["data"] == [{"a": "x", "b": None}] and "expected a number" in records[0]["error"]
    )
    assert records[1]["data"] == [] and "nested too deeply" in records[1]["error"]
    assert len(read_lines(tmp_path, "model_outputs")) == 1  # only what was scored has outputs
    assert collector.errors == 0


def test_an_item_that_cannot_be_written_is_counted_and_the_rest_are_written(tmp_path, capsys):
    collector = Collector(tmp_path, WHERE, flush_s=3600)
    counted: list[int] = []
    collector.on_error = counted.append
    collector.add(scored(1.0, at=float("nan")))
    collector.add(scored(2.0))
    collector.close()
    assert [r["data"][0]["a"] for r in read_lines(tmp_path)] == [2.0]
    assert collector.errors == 1 and counted == [1]
    assert "1 record(s) not written" in capsys.readouterr().err


def _wait_dead(pid: int, timeout: float = 30) -> None:
    """Until ``pid`` has exited (a zombie, its pipes closed, counts as exited)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:  # reaped already
            return
        if state == "Z":
            return
        assert time.monotonic() < deadline, f"process {pid} did not exit"
        time.sleep(0.01)


def test_a_dead_writer_costs_only_the_requests_it_was_sent_and_a_new_one_takes_over(
    tmp_path, capsys
):
    collector = Collector(tmp_path, WHERE, flush_s=3600)
    collector.add(scored(1.0))
    collector.flush()
    first = collector.writer_pid
    assert first != os.getpid() and collector.written == 1
    os.kill(first, signal.SIGSTOP)  # it reads nothing more
    collector.add(scored(2.0))
    collector.flush(timeout=0)  # sent, and waiting in the pipe when the writer dies
    os.kill(first, signal.SIGKILL)
    _wait_dead(first)
    deadline = time.monotonic() + 10
    while collector.errors == 0:  # the collector sees its writer's end
        assert time.monotonic() < deadline, "the writer's end was not noticed"
        time.sleep(0.01)
    collector.add(scored(3.0))
    collector.close()
    assert collector.writer_pid != first
    assert [r["data"][0]["a"] for r in read_lines(tmp_path)] == [1.0, 3.0]
    assert (collector.written, collector.errors) == (2, 1)
    assert "the collection writer stopped" in capsys.readouterr().err


def test_a_writer_that_cannot_start_is_retried_with_a_growing_wait_and_its_requests_counted(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(collect, "WRITER", "nbmill.no_such_writer")  # python -m fails at once
    collector = Collector(tmp_path, WHERE, flush_s=3600)
    started = {collector.writer_pid}
    deadline = time.monotonic() + 2.0
    sent = 0
    while time.monotonic() < deadline:
        collector.add(scored(float(sent)))
        collector.flush(timeout=0.1)
        sent += 1
        started.add(collector.writer_pid)
        time.sleep(0.02)
    collector.close()
    assert sent > 40 and 2 <= len(started) <= 4  # 0, 0.5 and 1 s waits, not one per flush
    assert (collector.written, collector.errors) == (0, sent)
    assert "the collection writer stopped (exit code 1)" in capsys.readouterr().err
    assert read_lines(tmp_path) == []


def test_a_line_left_half_written_by_a_killed_writer_is_cut_before_the_next_is_written(tmp_path):
    first = Collector(tmp_path, WHERE, flush_s=3600)
    first.add(scored(1.0))
    first.close()
    (path,) = (tmp_path / "ep/blue/model_inputs").rglob("w1.jsonl")
    whole = path.read_bytes()
    path.write_bytes(whole + whole[: len(whole) // 2])  # killed in the middle of a write
    second = Collector(tmp_path, WHERE, flush_s=3600)
    second.add(scored(2.0))
    second.close()
    assert [r["data"][0]["a"] for r in read_lines(tmp_path)] == [1.0, 2.0]  # every line reads


def test_the_writer_finishes_what_it_was_sent_when_the_server_is_killed(tmp_path):
    script = (
        "import os, signal\n"
        "from tests.test_serving_parts import WHERE, scored\n"
        "from nbmill.serving.collect import Collector\n"
        f"c = Collector({str(tmp_path)!r}, WHERE, flush_s=3600)\n"
        "for i in range(2000):\n"
        "    c.add(scored(float(i)))\n"
        "c.flush(timeout=0)\n"  # sent; the server dies before the writer could answer
        "print(c.writer_pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    _wait_dead(int(done.stdout))  # it ends once done writing, as its stdin has ended
    assert [r["data"][0]["a"] for r in read_lines(tmp_path)] == [float(i) for i in range(2000)]


def test_the_buffer_is_bounded_and_what_it_drops_is_counted(tmp_path):
    collector = Collector(tmp_path, WHERE, flush_s=3600, max_pending=3)
    for i in range(5):
        collector.add(scored(float(i)))
    collector.close()
    assert [r["data"][0]["a"] for r in read_lines(tmp_path)] == [0.0, 1.0, 2.0]
    assert collector.dropped == 2
