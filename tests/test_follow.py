"""``nbmill serve NAME@ALIAS --follow``: the endpoint follows its alias as the ledger records it,
with no failed request, over real HTTP, a real MLflow registry and real alias moves."""

from __future__ import annotations

import asyncio
import http.client
import itertools
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from nbmill.governance.ledger import Ledger
from nbmill.models import aliases as moves
from nbmill.project.config import load_config
from nbmill.serving.follow import PROMOTED, AliasWatch, Follower, Move, Served
from nbmill.serving.request import Signature
from nbmill_example import diabetes
from tests.conftest import ServeProcess, mlflow_store, nbmill
from tests.test_registry import register

ALPHAS = {"1": 1.0, "2": 0.01, "3": 10.0}  # three versions that predict differently
REQUESTS = 2000  # at least, from CLIENTS connections
CLIENTS = 8
AROUND = 400  # answers before each move and after the last


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A project with one model in a sqlite MLflow store: versions 1, 2 and 3, 1 in production."""
    import mlflow

    project = tmp_path_factory.mktemp("project")
    train, test = diabetes.split(diabetes.load(), test_size=0.2, seed=42)
    train_csv = project / "train.csv"
    diabetes.save(train, train_csv)
    data = SimpleNamespace(train_csv=train_csv)
    fitted, name = {}, "follow-ridge"
    with mlflow_store(project, "follow") as uri:
        for version, alpha in ALPHAS.items():
            fitted[version] = diabetes.fit(train, alpha=alpha)
            with mlflow.start_run():
                info = diabetes.log_model(fitted[version], train)
            register(info, name, project, project / f"m{version}", data, run_id=f"run-{version}")
        moves.promote(name, "1", reason="first release", project_dir=project)
        yield {"project": project, "name": name, "uri": uri, "fitted": fitted, "test": test}


@pytest.fixture
def production(registry, monkeypatch):
    """Production back on version 1 (in the registry and the ledger) after the test."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry["uri"])
    yield registry
    if _alias(registry) != "1":
        moves.promote(registry["name"], "1", reason="reset", project_dir=registry["project"])


def _alias(registry) -> str:
    from nbmill.models import store as st

    store = st.Store.of(registry["project"])
    return st.aliases_of(st.registered(store, registry["name"])).get("production")


def _events(project: Path, kind: str) -> list[dict]:
    return [e for e in Ledger(load_config(project).ledger).events() if e["type"] == kind]


@dataclass
class Answer:
    sent: float
    received: float
    status: int
    version: str | None
    prediction: float | None
    row: int


class Client(threading.Thread):
    """One keep-alive connection sending 1-row requests, one after another, until ``stop``."""

    def __init__(self, server, rows: np.ndarray, counter, answers: list[Answer], stop):
        super().__init__(daemon=True)
        self.server, self.rows, self.counter, self.answers = server, rows, counter, answers
        self.stop = stop

    def run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        headers = {"Authorization": f"Bearer {self.server.key}"}
        while not self.stop.is_set():
            index = next(self.counter)
            row = index % len(self.rows)
            data = {"columns": diabetes.FEATURES, "data": [self.rows[row].tolist()]}
            sent = time.monotonic()
            try:
                connection.request("POST", "/score", json.dumps({"input_data": data}), headers)
                response = connection.getresponse()
                body = json.loads(response.read())
                status, version = response.status, response.getheader("x-nbmill-model-version")
            except (OSError, http.client.HTTPException, ValueError):
                status, version, body = 0, None, {}
                connection.close()
            prediction = (body.get("predictions") or [None])[0]
            self.answers.append(Answer(sent, time.monotonic(), status, version, prediction, row))


def _versions_held(timeline: list[tuple[float, float, str]], start: str, at: tuple[float, float]):
    """The versions the alias held at any moment of ``at``: ``timeline`` is each move's
    (began, returned, version), ``start`` the version before the first."""
    held, current = set(), start
    sent, received = at
    for began, returned, version in timeline:
        if returned < sent:
            current = version
        elif began <= received:  # a move overlapping the request: either side of it
            held |= {current, version}
            current = version
    return held | {current}


def test_the_endpoint_follows_its_alias_with_no_failed_request_and_each_answer_names_its_version(
    production, tmp_path
):
    project, name = production["project"], production["name"]
    rows = production["test"][diabetes.FEATURES].to_numpy()
    server = ServeProcess(f"{name}@production", cwd=project, collect_dir=tmp_path / "collected",
                          extra=("--follow",))  # fmt: skip
    try:
        server.wait_ready()
        answers: list[Answer] = []
        counter, stop = itertools.count(), threading.Event()
        clients = [Client(server, rows, counter, answers, stop) for _ in range(CLIENTS)]
        for client in clients:
            client.start()
        timeline = []  # requests before, between and after the moves, however long they take
        for version, move in (
            ("2", lambda: moves.promote(name, "2", reason="release 2", project_dir=project)),
            ("1", lambda: moves.rollback(name, reason="latency", project_dir=project)),
        ):
            _wait_for(answers, len(answers) + AROUND)
            began = time.monotonic()
            move()
            timeline.append((began, time.monotonic(), version))
        _wait_for(answers, max(REQUESTS, len(answers) + AROUND))
        stop.set()
        for client in clients:
            client.join(60)
        health = json.loads(_get(server, "/health"))
        metrics = _get(server, "/metrics")
    finally:
        server.stop()
    assert len(answers) >= REQUESTS
    assert [a for a in answers if a.status != 200] == []  # no failed request
    wrong = [
        a for a in answers if a.version not in _versions_held(timeline, "1", (a.sent, a.received))
    ]
    assert wrong == [], f"{len(wrong)} answers named a version the alias did not hold then"
    expected = {v: production["fitted"][v].predict(production["test"][diabetes.FEATURES])
                for v in ("1", "2")}  # fmt: skip
    assert all(abs(a.prediction - expected[a.version][a.row]) < 1e-9 for a in answers)
    by_version = [a.version for a in sorted(answers, key=lambda a: a.received)]
    assert "2" in by_version and by_version[-1] == "1"  # both answered; the rollback stuck
    switches = [e["data"] for e in _events(project, "nbmill.model.deployed")][-2:]
    assert [(d["previous_version"], d["version"]) for d in switches] == [("1", "2"), ("2", "1")]
    assert all(d["target"] == f"serve:{name}/local" and d["model_sha256"] for d in switches)
    assert (health["version"], health["alias_version"], health["follow_error"]) == ("1", "1", None)
    assert (
        f'nbmill_model_serving{{sha256="{switches[1]["model_sha256"]}",version="1"}} 1.0' in metrics
    )
    assert (
        f'nbmill_model_serving{{sha256="{switches[0]["model_sha256"]}",version="2"}} 0.0' in metrics
    )
    collected = [json.loads(line) for p in (tmp_path / "collected").rglob("*.jsonl")
                 if "model_inputs" in p.parts for line in p.read_text().splitlines()]  # fmt: skip
    assert {r["modelversion"] for r in collected} == {"1", "2"} and len(collected) == len(answers)


def _wait_for(answers: list[Answer], count: int) -> None:
    deadline = time.monotonic() + 60
    while len(answers) < count:
        assert time.monotonic() < deadline, f"{len(answers)} of {count} answers in 60 s"
        time.sleep(0.001)


def _get(server: ServeProcess, path: str) -> str:
    """The body of GET ``path``, which names the version answering in its header too."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", path)
    response = connection.getresponse()
    body = response.read().decode()
    version = response.getheader("x-nbmill-model-version")
    if path == "/health":
        assert version == json.loads(body)["version"]
    return body


def test_a_version_whose_files_changed_is_not_served_and_health_says_why(production):
    from nbmill.models import store as st

    project, name = production["project"], production["name"]
    client = st.Store.of(project).client
    source = client.get_model_version_download_uri(name, "3")  # runs:/RUN/PATH
    run_id, _, path = source.removeprefix("runs:/").partition("/")
    stored = Path(client.get_run(run_id).info.artifact_uri.removeprefix("file://")) / path
    target = next(p for p in stored.iterdir() if p.name.startswith("model."))
    original = target.read_bytes()
    server = ServeProcess(f"{name}@production", cwd=project, extra=("--follow",))
    try:
        server.wait_ready()
        target.write_bytes(original + b"\0")  # the stored model changed after registration
        deployed = len(_events(project, "nbmill.model.deployed"))
        moves.promote(name, "3", reason="release 3", project_dir=project)
        status, version = _score(server)
        health = json.loads(_get(server, "/health"))
    finally:
        target.write_bytes(original)
        server.stop()
    assert (status, version) == (200, "1")  # the old version went on answering
    assert health["alias_version"] == "3" and health["version"] == "1"
    assert "version 3 not served" in health["follow_error"]
    assert "recorded when it was registered" in health["follow_error"]
    assert len(_events(project, "nbmill.model.deployed")) == deployed  # no switch recorded


def _score(server: ServeProcess) -> tuple[int, str | None]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    data = {"input_data": {"columns": diabetes.FEATURES, "data": [[0.0] * 10]}}
    connection.request(
        "POST", "/score", json.dumps(data), {"Authorization": f"Bearer {server.key}"}
    )
    response = connection.getresponse()
    response.read()
    return response.status, response.getheader("x-nbmill-model-version")


@pytest.mark.parametrize("ref", ["follow-ridge/1", "."])
def test_follow_needs_an_alias_and_says_so(production, ref):
    done = nbmill("serve", ref, "--follow", "--port", "0", cwd=production["project"])
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "give a registered model's alias, NAME@ALIAS" in done.stderr


def test_the_watch_reads_only_whole_new_lines_of_its_own_alias(tmp_path):
    ledger = tmp_path / "ledger.jsonl"

    def entry(seq: int, model: str, alias: str, version: str) -> bytes:
        data = {"model": model, "alias": alias, "version": version, "why": f"w{seq}"}
        event = {"type": "nbmill.model.promoted", "data": data}
        return json.dumps({"seq": seq, "event": event}).encode() + b"\n"

    watch = AliasWatch(ledger, "m", "production")
    assert not watch.changed() and watch.read() is None  # no ledger yet
    ledger.write_bytes(entry(1, "m", "production", "1") + entry(2, "other", "production", "9"))
    assert watch.changed() and watch.read() == Move("1", "w1", 1)
    assert not watch.changed() and watch.read() is None  # nothing new
    line = entry(3, "m", "staging", "5") + entry(4, "m", "production", "2")
    with open(ledger, "ab") as handle:
        handle.write(line[:-10])  # a line still being written
    assert watch.changed() and watch.read() is None  # the staging move is not this alias
    with open(ledger, "ab") as handle:
        handle.write(line[-10:])
    assert watch.read() == Move("2", "w4", 4) and watch.last == Move("2", "w4", 4)


def test_each_worker_follows_on_its_own(production):
    project, name = production["project"], production["name"]
    server = ServeProcess(f"{name}@production", cwd=project, workers=2, extra=("--follow",))
    try:
        server.wait_ready()
        before = len(_events(project, "nbmill.model.deployed"))
        assert {_score(server)[1] for _ in range(20)} == {"1"}
        moves.promote(name, "2", reason="release 2", project_dir=project)
        answered = [_score(server) for _ in range(40)]  # a new connection each: both workers
    finally:
        server.stop()
    assert set(answered) == {(200, "2")}
    switches = [e["data"] for e in _events(project, "nbmill.model.deployed")[before:]]
    assert {(d["previous_version"], d["version"]) for d in switches} == {("1", "2")}
    assert len({d["instance"] for d in switches}) == len(switches)  # one record per worker


# --- the switch, on its own: real asyncio, a real ledger file, models that are plain objects ---


class Constant:
    """A model that predicts one number for every row."""

    def __init__(self, value: float):
        self.value = value

    def predict(self, rows: np.ndarray) -> np.ndarray:
        return np.full(len(rows), self.value)


def _served(version: str, columns: tuple[str, ...] = ("a", "b")) -> Served:
    signature = Signature(columns, ("double",) * len(columns))
    return Served(
        Constant(float(version)), signature, version, f"sha-{version}", {"version": version}
    )


def _promote(ledger: Path, seq: int, version: str) -> None:
    data = {"model": "m", "alias": "production", "version": version, "why": f"move {seq}"}
    with open(ledger, "a") as handle:
        handle.write(json.dumps({"seq": seq, "event": {"type": PROMOTED, "data": data}}) + "\n")


def _follower(tmp_path: Path, versions: dict[str, Served], announced: list, gate=None) -> Follower:
    def load(version: str, sample) -> Served:
        if gate is not None:
            gate.wait(10)  # the test says when loading may finish
        return versions[version]

    watch = AliasWatch(tmp_path / "ledger.jsonl", "m", "production")
    record = lambda old, new, move: announced.append((old.version, new.version))  # noqa: E731
    return Follower(versions["1"], watch, load, record, lambda old, new, move: None)


def test_a_version_with_other_input_columns_is_not_switched_to(tmp_path):
    announced: list = []
    follower = _follower(tmp_path, {"1": _served("1"), "2": _served("2", ("a", "c"))}, announced)

    async def scenario() -> Served:
        _promote(tmp_path / "ledger.jsonl", 1, "2")
        return follower.now() or await follower.next()

    served = asyncio.run(scenario())
    assert served.version == "1" and announced == []
    assert "input columns (a, c) are not the ones served (a, b)" in follower.state()["follow_error"]


def test_a_request_cancelled_while_it_waits_does_not_cancel_the_switch(tmp_path):
    announced: list = []
    gate = threading.Event()
    follower = _follower(tmp_path, {"1": _served("1"), "2": _served("2")}, announced, gate)

    async def scenario() -> list[str]:
        _promote(tmp_path / "ledger.jsonl", 1, "2")
        assert follower.now() is None  # the switch is under way
        waiting = [asyncio.ensure_future(follower.next()) for _ in range(3)]
        await asyncio.sleep(0.01)
        waiting[0].cancel()  # a client went away
        gate.set()
        done = await asyncio.gather(*waiting[1:])
        return [s.version for s in done]

    assert asyncio.run(scenario()) == ["2", "2"]
    assert follower.served.version == "2" and announced == [("1", "2")]


def test_the_watch_skips_lines_that_are_not_entries_and_follows_a_replaced_ledger(tmp_path):
    ledger = tmp_path / "ledger.jsonl"
    ledger.write_text('{"event": "oops"}\n[1, 2]\nnot json\n')
    _promote(ledger, 1, "2")
    watch = AliasWatch(ledger, "m", "production")
    assert watch.read() == Move("2", "move 1", 1)
    replaced = tmp_path / "new.jsonl"
    _promote(replaced, 1, "3")
    _promote(replaced, 2, "4")  # longer than what was read: only its inode says it is new
    replaced.replace(ledger)
    assert watch.changed() and watch.read() == Move("4", "move 2", 2)
    with open(ledger, "a") as handle:
        handle.write('{"seq": 3, "event"')  # cut short: read once, then not again
    assert watch.changed() and watch.read() is None and not watch.changed()
