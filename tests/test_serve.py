"""The scoring service over real HTTP on 127.0.0.1: predictions, bad input, auth, integrity,
collection that survives SIGTERM, and a bounded load test."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from nbmill._net import free_port
from nbmill.collection import read_lines
from nbmill.models.package import package_model
from nbmill.serving.deploy import smoke_test
from nbmill.serving.request import InputError, Signature, parse_request
from nbmill_example import diabetes
from tests.conftest import ROOT, ServeProcess, saved_model

KEY = "test-key-0123456789"
SIG = Signature(tuple(diabetes.FEATURES), ("double",) * len(diabetes.FEATURES))


def body(columns, data) -> bytes:
    return json.dumps({"input_data": {"columns": columns, "data": data}}).encode()


ROW = [0.03, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, 0.0, 0.02, -0.01]


# --- the request parser (pure) ----------------------------------------------------------------


def test_the_azure_ml_shape_and_records_give_the_same_matrix():
    records = json.dumps([dict(zip(diabetes.FEATURES, ROW, strict=True))]).encode()
    reordered = body(diabetes.FEATURES[::-1], [ROW[::-1]])
    expected = np.array([ROW])
    for request in (body(diabetes.FEATURES, [ROW]), records, reordered):
        assert np.array_equal(parse_request(request, SIG), expected)


BAD_BODIES = [
    (b"{not json", 400, "malformed JSON"),
    (b"", 400, "empty body"),
    (body(diabetes.FEATURES, []), 400, "no rows to score"),
    (body(diabetes.FEATURES[:8], [ROW[:8]]), 400, "missing columns: s5, s6"),
    (body([*diabetes.FEATURES, "zip"], [[*ROW, 1]]), 400, "unexpected columns: zip"),
    (body(diabetes.FEATURES, [["x", *ROW[1:]]]), 400, "row 0, column 'age': expected a number"),
    (body(diabetes.FEATURES, [[True, *ROW[1:]]]), 400, "column 'age': expected a number"),
    (body(diabetes.FEATURES, [[None, *ROW[1:]]]), 400, "column 'age': expected a number"),
    (
        b'{"input_data": {"columns": ["age","sex","bmi","bp","s1","s2","s3","s4","s5","s6"],'
        b' "data": [[NaN, 0, 0, 0, 0, 0, 0, 0, 0, 0]]}}',
        400,
        "column 'age': nan is not allowed",
    ),
    (body(diabetes.FEATURES, [ROW, ROW[:9]]), 400, "row 1: expected 10 values, got 9"),
    (body(diabetes.FEATURES, [ROW] * 10_001), 413, "10001 rows is more than the limit"),
    (b'{"rows": []}', 400, "unknown request shape"),
]


@pytest.mark.parametrize(("request_body", "status", "message"), BAD_BODIES)
def test_bad_input_is_a_4xx_naming_the_problem(request_body, status, message):
    with pytest.raises(InputError) as caught:
        parse_request(request_body, SIG)
    assert caught.value.status == status
    assert message in str(caught.value)


# --- the real service -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    saved = saved_model(folder)
    package_model(saved["dir"], folder / "package", ROOT / "environment.yml")
    return {"dir": folder / "package", "fitted": saved["fitted"], "test": saved["test"]}


class Server(ServeProcess):
    """The real ``nbmill serve`` (as the deploy step starts it), plus raw requests for tests."""

    def __init__(
        self,
        model_ref: Path,
        collect: Path | None,
        tmp: Path,
        workers: int = 1,
        log: Path | None = None,
    ):
        super().__init__(model_ref, cwd=tmp, collect_dir=collect, workers=workers, log=log)
        self.url = self.base

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=5) as response:
            return response.status, response.read().decode()

    def post(self, data: bytes, key: str | None = "") -> tuple[int, dict]:
        key = self.key if key == "" else key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        request = urllib.request.Request(self.url + "/score", data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    running = Server(model["dir"], tmp / "collected", tmp)
    running.wait_ready()
    yield running
    running.stop()


def test_predictions_match_the_model_in_process(server, model):
    test = model["test"]
    status, answer = server.post(body(diabetes.FEATURES, test[diabetes.FEATURES].values.tolist()))
    assert status == 200
    expected = model["fitted"].predict(test[diabetes.FEATURES])
    assert np.max(np.abs(np.array(answer["predictions"]) - expected)) < 1e-9


def test_each_bad_input_gets_a_4xx_and_the_service_stays_up(server):
    cases = [
        (b"{oops", 400, "malformed JSON"),
        (body(diabetes.FEATURES[:9], [ROW[:9]]), 400, "missing columns: s6"),
        (body(diabetes.FEATURES, [["x", *ROW[1:]]]), 400, "expected a number"),
    ]
    for data, status, message in cases:
        got, answer = server.post(data)
        assert got == status and message in answer["error"], (status, answer)
    assert server.get("/health")[0] == 200


def raw_score(server, length: int, body: bytes = b"") -> bytes:
    """POST /score over a plain socket: the headers (Content-Length ``length``) and ``body``
    sent in full before anything is read; then the reply, up to the end of its JSON."""
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + server.key.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: "
            + str(length).encode()
            + b"\r\n\r\n"
            + body
        )
        reply = b""
        while b"}" not in reply:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply


def test_an_oversized_body_is_refused_from_its_length_alone(server):
    reply = raw_score(server, 5_000_000)
    assert reply.startswith(b"HTTP/1.1 413") and b"more than the limit" in reply
    assert server.get("/health")[0] == 200


def test_missing_or_wrong_keys_are_refused(server):
    assert server.post(body(diabetes.FEATURES, [ROW]), key=None)[0] == 401
    status, answer = server.post(body(diabetes.FEATURES, [ROW]), key="wrong")
    assert status == 401 and "invalid key" in answer["error"]


def _metric(text: str, name: str) -> float:
    (line,) = [line for line in text.splitlines() if line.startswith(name + " ")]
    return float(line.rsplit(" ", 1)[1])


def test_metrics_count_requests_by_status(server):
    _, before = server.get("/metrics")
    ok = 'nbmill_requests_total{status="200"}'
    refused = 'nbmill_requests_total{status="401"}'
    counts = {name: _metric(before, name) if name in before else 0.0 for name in (ok, refused)}
    assert server.post(body(diabetes.FEATURES, [ROW, ROW]))[0] == 200
    assert server.post(body(diabetes.FEATURES, [ROW]), key="wrong")[0] == 401
    _, after = server.get("/metrics")
    assert _metric(after, ok) == counts[ok] + 1
    assert _metric(after, refused) == counts[refused] + 1
    assert 'nbmill_request_latency_seconds_bucket{le="+Inf"}' in after


def test_metrics_count_every_worker_whichever_answers_the_scrape(model, tmp_path):
    running = Server(model["dir"], None, tmp_path, workers=2)
    try:
        running.wait_ready()
        statuses: list[int] = []
        threads = [
            threading.Thread(
                target=_post_many,
                args=(running, body(diabetes.FEATURES, [ROW]), 20, statuses),
            )
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert statuses == [200] * 80
        scrapes = [running.get("/metrics")[1] for _ in range(6)]  # new connection each time
        totals = {_metric(t, 'nbmill_requests_total{status="200"}') for t in scrapes}
        assert totals == {80.0}
        assert {_metric(t, "nbmill_rows_scored_total") for t in scrapes} == {80.0}
    finally:
        running.stop()


def _post_many(server: Server, data: bytes, count: int, statuses: list[int]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    headers = {"Authorization": f"Bearer {server.key}", "Content-Type": "application/json"}
    for _ in range(count):
        connection.request("POST", "/score", data, headers)
        response = connection.getresponse()
        response.read()
        statuses.append(response.status)
    connection.close()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_bounded_load_has_no_5xx_and_flat_memory(server):
    data = body(diabetes.FEATURES, [ROW])

    def load(total: int) -> list[int]:
        statuses: list[int] = []
        threads = [
            threading.Thread(target=_post_many, args=(server, data, total // 8, statuses))
            for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        return statuses

    load(400)  # warm-up
    before = _rss_kib(server.process.pid)
    statuses = load(2000)
    after = _rss_kib(server.process.pid)
    assert len(statuses) == 2000 and set(statuses) == {200}
    assert after - before < 20 * 1024, f"RSS grew by {(after - before) / 1024:.1f} MiB"


@pytest.mark.parametrize(
    "workers, group", [(1, False), (1, True), (2, True)], ids=["process", "group", "2-workers"]
)
def test_collected_records_are_complete_after_sigterm(model, tmp_path, workers, group):
    collect = tmp_path / "collected"
    running = Server(model["dir"], collect, tmp_path, workers=workers)
    running.wait_ready()
    sent = [ROW[:i] + [float(i)] + ROW[i + 1 :] for i in range(10)]
    for row in sent:
        assert running.post(body(diabetes.FEATURES, [row]))[0] == 200
    assert running.post(b"{oops")[0] == 400
    # SIGTERM right away, to the server or to its whole process group as a service manager
    # sends it: the last second's buffer must be written all the same, by collection writers
    # that outlive their workers. uvicorn shuts down gracefully, then exits by the same signal
    # (-15), as a service manager expects.
    assert running.stop(group=group) in (0, -signal.SIGTERM)
    records = sorted(read_lines(collect), key=lambda r: r["status"])  # workers: each its file
    assert [r["status"] for r in records] == [200] * 10 + [400]
    assert sorted(list(r["data"][0].values()) for r in records[:10]) == sorted(sent)
    assert all(r["latencyms"] > 0 for r in records)
    outputs = read_lines(collect, "model_outputs")
    assert sorted(o["correlationid"] for o in outputs) == sorted(
        r["correlationid"] for r in records[:10]
    )
    assert all(len(o["data"]) == 1 and "prediction" in o["data"][0] for o in outputs)


def test_a_tampered_model_is_refused_before_serving(model, tmp_path):
    import shutil

    package = tmp_path / "package"
    shutil.copytree(model["dir"], package)
    target = next(p for p in (package / "model").iterdir() if p.name.startswith("model."))
    target.write_bytes(target.read_bytes() + b"\0")
    done = subprocess.run(
        [sys.executable, "-m", "nbmill", "serve", str(package), "--port", str(free_port())],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NBMILL_SERVE_KEY": KEY},
    )
    assert done.returncode == 1
    assert "sha256 differs from the package manifest" in done.stderr


def test_the_smoke_test_passes_for_the_model_and_fails_for_another(model, tmp_path):
    test = model["test"].head(20)
    rows = test[diabetes.FEATURES].values.tolist()
    expected = model["fitted"].predict(test[diabetes.FEATURES])
    result = smoke_test(model["dir"], diabetes.FEATURES, rows, expected, cwd=tmp_path)
    assert result["rows"] == 20 and result["max_abs_diff"] < 1e-9
    from nbmill.errors import NbmillError

    with pytest.raises(NbmillError, match="served predictions differ"):
        smoke_test(model["dir"], diabetes.FEATURES, rows, expected + 1.0, cwd=tmp_path)


def test_a_failed_smoke_test_leaves_the_previous_deployment_and_announces_nothing(model, tmp_path):
    from nbmill.errors import NbmillError
    from nbmill.governance.events import Notifier
    from nbmill.governance.ledger import Ledger
    from nbmill.project.config import load_config
    from nbmill.serving.deploy import deploy_local

    deployments = tmp_path / "runs" / "deployments"
    deployments.mkdir(parents=True)
    previous = '{"model": "diabetes-ridge", "version": "1"}\n'
    (deployments / "local.json").write_text(previous)
    notifier = Notifier(load_config(tmp_path))
    test = model["test"].head(5)
    rows = test[diabetes.FEATURES].values.tolist()
    wrong = model["fitted"].predict(test[diabetes.FEATURES]) + 0.5
    with pytest.raises(NbmillError, match="served predictions differ"):
        deploy_local(
            model["dir"],
            deployments,
            diabetes.FEATURES,
            rows,
            wrong,
            model="diabetes-ridge",
            version="2",
            run_id="r2",
            notifier=notifier,
        )
    assert (deployments / "local.json").read_text() == previous
    assert Ledger(tmp_path / "runs" / "ledger.jsonl").events() == []

    right = model["fitted"].predict(test[diabetes.FEATURES])
    deploy_local(
        model["dir"],
        deployments,
        diabetes.FEATURES,
        rows,
        right,
        model="diabetes-ridge",
        version="2",
        run_id="r2",
        notifier=notifier,
    )
    (event,) = Ledger(tmp_path / "runs" / "ledger.jsonl").events()
    assert event["type"] == "nbmill.model.deployed" and event["data"]["previous_version"] == "1"
    assert json.loads((deployments / "local.json").read_text())["version"] == "2"


def test_a_deeply_nested_body_is_a_400_and_collection_goes_on(model, tmp_path):
    collect = tmp_path / "collected"
    running = Server(model["dir"], collect, tmp_path)
    running.wait_ready()
    deep = b'{"input_data": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    status, answer = running.post(deep)
    assert status == 400 and "nested too deeply" in answer["error"]
    after = [ROW[:i] + [float(i)] + ROW[i + 1 :] for i in range(3)]
    for row in after:
        assert running.post(body(diabetes.FEATURES, [row]))[0] == 200
    _, metrics = running.get("/metrics")
    assert _metric(metrics, "nbmill_collect_errors_total") == 0
    assert running.stop() in (0, -signal.SIGTERM)
    records = read_lines(collect)
    assert [r["status"] for r in records] == [400, 200, 200, 200]
    assert [list(r["data"][0].values()) for r in records[1:]] == after


def test_every_malformed_body_is_collected_as_refused_and_collection_goes_on(model, tmp_path):
    collect = tmp_path / "collected"
    running = Server(model["dir"], collect, tmp_path)
    running.wait_ready()
    for data, status, _ in BAD_BODIES:
        assert running.post(data)[0] == status
    valid = [ROW[:i] + [float(i)] + ROW[i + 1 :] for i in range(3)]
    for row in valid:
        assert running.post(body(diabetes.FEATURES, [row]))[0] == 200
    assert running.stop() in (0, -signal.SIGTERM)
    records = read_lines(collect)
    assert [r["status"] for r in records] == [s for _, s, _ in BAD_BODIES] + [200] * 3
    assert all(r["error"] for r in records[: len(BAD_BODIES)])
    assert [list(r["data"][0].values()) for r in records[-3:]] == valid
    typed = next(
        r for r in records if "'age': expected a number (double), got str" in r.get("error", "")
    )
    assert typed["data"][0]["age"] == "x"  # as sent: data quality counts it as a type error


def test_a_client_request_id_is_echoed_and_collected(server):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    headers = {"Authorization": f"Bearer {server.key}", "x-request-id": "req-42"}
    connection.request("POST", "/score", body(diabetes.FEATURES, [ROW]), headers)
    response = connection.getresponse()
    response.read()
    assert response.status == 200 and response.getheader("x-request-id") == "req-42"
    unnamed = {**headers, "x-request-id": ""}
    connection.request("POST", "/score", body(diabetes.FEATURES, [ROW]), unnamed)
    response = connection.getresponse()
    response.read()
    generated = response.getheader("x-request-id")
    assert generated and generated != "req-42" and len(generated) == 36
    connection.close()


def test_a_client_that_sends_the_whole_oversized_body_still_gets_its_413(server):
    big = b"[" + b"0," * 1_500_000 + b"0]"  # 3 MB: past the 1 MiB limit
    reply = raw_score(server, len(big), big)  # all of it, before reading anything
    assert reply.startswith(b"HTTP/1.1 413") and b"more than the limit" in reply
    assert server.get("/health")[0] == 200


# --- start-up and shutdown ------------------------------------------------------------------

SERVE_THEN_SHOW_ENVIRONMENT = """
import json, os, sys
from pathlib import Path
from nbmill.serving.startup import serve
serve(sys.argv[1], Path.cwd(), port=int(sys.argv[2]), workers=2, announce=lambda line: None)
names = ("NBMILL_SERVE_CONFIG", "PROMETHEUS_MULTIPROC_DIR")
print(json.dumps({name: os.environ.get(name) for name in names}))
"""


def test_serving_leaves_the_process_environment_as_it_found_it(model, tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE_THEN_SHOW_ENVIRONMENT, str(model["dir"]), str(port)],
        cwd=tmp_path,
        env={**env, "NBMILL_SERVE_KEY": KEY},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_health(process, f"http://127.0.0.1:{port}/health")
        process.terminate()
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    after = json.loads(out.splitlines()[-1])
    assert after == {"NBMILL_SERVE_CONFIG": None, "PROMETHEUS_MULTIPROC_DIR": None}


def _wait_for_health(process: subprocess.Popen, url: str, timeout: float = 60) -> None:
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            assert process.poll() is None, "the service exited before it answered"
            assert time.monotonic() < deadline, f"no answer on {url} in {timeout}s"
            time.sleep(0.2)


def test_first_starts_at_once_all_use_the_one_key_made(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from nbmill.serving.startup import load_key

    monkeypatch.delenv("NBMILL_SERVE_KEY", raising=False)
    starts = 8
    for attempt in range(25):  # the race is between a check and a create: give it chances
        project = tmp_path / f"project-{attempt}"
        project.mkdir()
        together = threading.Barrier(starts)

        def start(_, project=project, together=together):
            together.wait()
            return load_key(project)

        with ThreadPoolExecutor(starts) as pool:
            keys = list(pool.map(start, range(starts)))
        path = project / ".nbmill" / "serve.key"
        assert {key for key, _ in keys} == {path.read_text().strip()}
        assert len(keys[0][0]) >= 32 and {source for _, source in keys} == {str(path)}
        assert path.stat().st_mode & 0o777 == 0o600
        assert [p.name for p in path.parent.iterdir()] == ["serve.key"]


def test_the_smoke_test_serves_in_this_process_and_leaves_no_thread_or_socket(model, tmp_path):
    import shutil
    import threading

    from nbmill.errors import NbmillError

    test = model["test"].head(5)
    rows = test[diabetes.FEATURES].values.tolist()
    expected = model["fitted"].predict(test[diabetes.FEATURES])
    threads, sockets = set(threading.enumerate()), _sockets()
    assert smoke_test(model["dir"], diabetes.FEATURES, rows, expected, cwd=tmp_path)["rows"] == 5
    # Nothing new is left behind (a thread of an earlier test may end meanwhile: not ours).
    assert set(threading.enumerate()) - threads == set() and _sockets() - sockets == set()
    tampered = tmp_path / "tampered"
    shutil.copytree(model["dir"], tampered)
    target = next(p for p in (tampered / "model").rglob("*") if p.name == "MLmodel")
    target.write_bytes(target.read_bytes() + b"\n")  # as nbmill serve does, the files are checked
    with pytest.raises(NbmillError, match="smoke test: .*sha256 differs from the package"):
        smoke_test(tampered, diabetes.FEATURES, rows, expected, cwd=tmp_path)
    assert set(threading.enumerate()) - threads == set() and _sockets() - sockets == set()


def _sockets() -> set[str]:
    return {path for path in _open_paths() if path.startswith("socket:")}


def _open_paths() -> list[str]:
    """What this process's file descriptors point at."""
    paths = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            paths.append(os.readlink(fd))
        except FileNotFoundError:  # the descriptor listing the folder, closed since
            continue
    return paths


@pytest.fixture(scope="module")
def failing_package(tmp_path_factory) -> Path:
    """A package whose model fails when it scores: its last step's coefficients were cut short
    after it was fitted, so predict raises numpy's shape error."""
    import mlflow.sklearn

    folder = tmp_path_factory.mktemp("failing")
    train, _ = diabetes.split(diabetes.load(), test_size=0.2, seed=42)
    fitted = diabetes.fit(train, alpha=1.0)
    signature = diabetes.signature(fitted, train)
    fitted[-1].coef_ = fitted[-1].coef_[:3]
    mlflow.sklearn.save_model(
        fitted, str(folder / "model"), signature=signature, pip_requirements=["scikit-learn"]
    )
    package_model(folder / "model", folder / "package", ROOT / "environment.yml")
    return folder / "package"


def test_a_model_failure_is_a_generic_500_naming_the_request_and_the_detail_stays_inside(
    failing_package, tmp_path
):
    collect, log = tmp_path / "collected", tmp_path / "serve.log"
    running = Server(failing_package, collect, tmp_path, log=log)
    try:
        running.wait_ready()
        connection = http.client.HTTPConnection("127.0.0.1", running.port, timeout=10)
        headers = {"Authorization": f"Bearer {running.key}", "x-request-id": "req-500"}
        connection.request("POST", "/score", body(diabetes.FEATURES, [ROW]), headers)
        response = connection.getresponse()
        answer = json.loads(response.read())
        connection.close()
    finally:
        running.stop()
    assert response.status == 500 and response.getheader("x-request-id") == "req-500"
    assert answer == {"error": "scoring failed (request id req-500); the server log has why"}
    logged = log.read_text()
    assert "req-500" in logged and "ValueError" in logged and "matmul" in logged
    (record,) = read_lines(collect)
    assert record["status"] == 500 and record["correlationid"] == "req-500"
    assert "ValueError" in record["error"]  # the collection is the operator's, like the log
