"""The OpenLineage sink: a run reaches a real lineage server as START then COMPLETE, with its
files as datasets carrying their sha256; delivery spools and retries like every sink."""

from __future__ import annotations

import hashlib
import io
import json
import uuid

import jsonschema
import pytest
import yaml

from nbmill.governance.events import Notifier, Spool, retry_spooled
from nbmill.governance.sinks import openlineage
from nbmill.project.config import ConfigError, ProjectConfig, SinkConfig, load_config
from nbmill.project.secret import EnvRef
from tests.conftest import Receiver, load_run, nbmill, only_run, write_notebook

KEY_ENV, URL_ENV = "NBMILL_TEST_LINEAGE_KEY", "NBMILL_TEST_LINEAGE_URL"
KEY = "ol-key-5e11a9"
ENDPOINT = "/api/v1/lineage"
RUN_ID = "20261201T114325104Z-58c007"


def base_url(server: Receiver) -> str:
    return f"http://127.0.0.1:{server.server.server_port}"


def lineage_sink(url: str, retries: int = 3, **options) -> SinkConfig:
    return SinkConfig("lineage", "openlineage", url, retries=retries, timeout_s=2.0, **options)


def config(tmp_path, *sinks: SinkConfig) -> ProjectConfig:
    runs = tmp_path / "runs"
    return ProjectConfig(tmp_path, runs, runs / "ledger.jsonl", tuple(sinks))


def bodies(server: Receiver) -> list[dict]:
    return [r["body"] for r in server.received]


def facet_is_valid(facet: dict, name: str) -> None:
    schema = {**openlineage.FACET_SCHEMA, "$ref": f"#/$defs/{name}"}
    jsonschema.validate(facet, schema)
    assert facet["_schemaURL"] == f"{openlineage.SCHEMA_ID}#/$defs/{name}"


# -- a real run ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lineage_run(tmp_path_factory):
    project = tmp_path_factory.mktemp("lineage")
    write_notebook(
        project / "notebooks" / "make.ipynb",
        'rows = 3\nout = "x.csv"',
        "from pathlib import Path\nPath(out).write_text('a\\n' * rows)",
    )
    write_notebook(
        project / "notebooks" / "use.ipynb",
        'rows_file = "x.csv"\ndigest = "d.txt"',
        "import hashlib\nfrom pathlib import Path\n"
        "Path(digest).write_text(hashlib.sha256(Path(rows_file).read_bytes()).hexdigest())",
    )
    (project / "pipelines").mkdir()
    (project / "pipelines" / "p.yml").write_text(
        yaml.safe_dump(
            {
                "name": "lineaged",
                "steps": {
                    "make": {
                        "notebook": "notebooks/make.ipynb",
                        "params": {"rows": 4},
                        "outputs": {"out": "data/x.csv"},
                    },
                    "use": {
                        "notebook": "notebooks/use.ipynb",
                        "needs": ["make"],
                        "inputs": {"rows_file": "data/x.csv"},
                        "outputs": {"digest": "digest.txt"},
                    },
                },
            }
        )
    )
    server = Receiver()
    (project / "nbmill.yml").write_text(
        yaml.safe_dump(
            {
                "notify": [
                    {
                        "name": "lineage",
                        "type": "openlineage",
                        "url": base_url(server),
                        "namespace": "diabetes-team",
                        "api_key": f"${{env:{KEY_ENV}}}",
                    }
                ]
            }
        )
    )
    done = nbmill("run", "pipelines/p.yml", "--reason", "lineage", cwd=project, env={KEY_ENV: KEY})
    server.close()
    return {"done": done, "project": project, "server": server}


@pytest.mark.slow
def test_a_run_reaches_the_lineage_server_as_start_then_complete(lineage_run):
    done, server = lineage_run["done"], lineage_run["server"]
    assert done.returncode == 0, done.stderr
    run_dir = only_run(lineage_run["project"] / "runs")
    runs = [b for b in bodies(server) if b["job"]["name"] == "lineaged"]
    assert [b["eventType"] for b in runs] == ["START", "COMPLETE"]
    assert {b["run"]["runId"] for b in runs} == {openlineage.run_uuid(run_dir.name)}
    assert {b["job"]["namespace"] for b in runs} == {"diabetes-team"}
    assert all(b["producer"] == openlineage.PRODUCER for b in runs)
    for got in server.received:
        assert got["path"] == ENDPOINT
        assert got["headers"]["Authorization"] == f"Bearer {KEY}"
        assert got["body"]["job"]["name"] in ("lineaged", "lineaged.make", "lineaged.use")
    start = runs[0]["run"]["facets"]["nbmill_run"]
    assert start["run"] == run_dir.name and start["why"] == "lineage"
    assert start["params"]["make"]["rows"] == 4
    facet_is_valid(start, "NbmillRunFacet")
    assert Spool(lineage_run["project"] / "runs" / ".spool").pending() == []


@pytest.mark.slow
def test_the_completed_run_lists_every_recorded_file_with_its_sha256(lineage_run):
    run_dir = only_run(lineage_run["project"] / "runs")
    files = load_run(run_dir)["files"]
    (complete,) = [
        b
        for b in bodies(lineage_run["server"])
        if (b["eventType"], b["job"]["name"]) == ("COMPLETE", "lineaged")
    ]
    assert complete["inputs"] == []  # a pipeline's inputs are made by its own steps
    outputs = {d["name"]: d for d in complete["outputs"]}
    assert {"data/x.csv", "digest.txt", "notebooks/make.ipynb", "run.json"} <= set(outputs)
    assert set(outputs) == set(files) | {"run.json"}
    for name, dataset in outputs.items():
        assert dataset["namespace"] == "diabetes-team"
        facet = dataset["facets"]["nbmill_file"]
        facet_is_valid(facet, "FileDatasetFacet")
        on_disk = hashlib.sha256((run_dir / name).read_bytes()).hexdigest()
        assert facet["sha256"] == on_disk == dataset["facets"]["version"]["datasetVersion"]
        assert facet["run"] == run_dir.name


# -- steps, failures, and what is not lineage ---------------------------------------------------


def step_data(status: str = "completed", **extra) -> dict:
    """A step event's data as the runner builds it, plus the pipeline and the step's inputs."""
    return {
        "run_id": RUN_ID,
        "step": "train",
        "status": status,
        "who": "ada",
        "why": "nightly",
        "duration_s": 3.4,
        "outputs": {"model/model.skops": "b" * 64},
        "error": None,
        "pipeline": "training",
        "inputs": {"data/train.csv": "a" * 64},
        **extra,
    }


def test_a_step_event_becomes_a_child_run_with_its_inputs_and_outputs(tmp_path):
    server = Receiver()
    try:
        notifier = Notifier(config(tmp_path, lineage_sink(base_url(server), namespace="ns")))
        notifier.emit("nbmill.step.completed", f"runs/{RUN_ID}/steps/train", step_data())
        notifier.close()
    finally:
        server.close()
    (body,) = bodies(server)
    assert body["eventType"] == "COMPLETE"
    assert body["job"] == {
        "namespace": "ns",
        "name": "training.train",
        "facets": {"jobType": body["job"]["facets"]["jobType"]},
    }
    assert body["job"]["facets"]["jobType"]["jobType"] == "TASK"
    assert body["run"]["runId"] == openlineage.run_uuid(RUN_ID, "train")
    parent = body["run"]["facets"]["parent"]
    assert parent["run"]["runId"] == openlineage.run_uuid(RUN_ID)
    assert (parent["job"]["namespace"], parent["job"]["name"]) == ("ns", "training")
    assert parent["root"]["run"]["runId"] == openlineage.run_uuid(RUN_ID)
    (source,) = body["inputs"]
    (made,) = body["outputs"]
    assert (source["name"], source["facets"]["nbmill_file"]["sha256"]) == (
        "data/train.csv",
        "a" * 64,
    )
    assert (made["name"], made["facets"]["nbmill_file"]["sha256"]) == (
        "model/model.skops",
        "b" * 64,
    )


def test_a_failed_run_is_fail_with_its_error_and_an_interrupted_one_abort(tmp_path):
    server = Receiver()
    error = {"step": "train", "type": "ValueError", "message": "bad alpha", "cell": 3}
    finished = {"run_id": RUN_ID, "pipeline": "training", "files": {}, "error": error}
    try:
        notifier = Notifier(config(tmp_path, lineage_sink(base_url(server))))
        notifier.emit("nbmill.run.failed", f"runs/{RUN_ID}", {**finished, "status": "failed"})
        notifier.emit("nbmill.run.failed", f"runs/{RUN_ID}", {**finished, "status": "interrupted"})
        notifier.close()
    finally:
        server.close()
    failed, aborted = bodies(server)
    assert (failed["eventType"], aborted["eventType"]) == ("FAIL", "ABORT")
    message = failed["run"]["facets"]["errorMessage"]
    assert message["message"] == "step 'train' (cell 3): ValueError: bad alpha"
    assert message["programmingLanguage"] == "python"
    assert failed["job"]["namespace"] == f"nbmill/{tmp_path.name}"  # the project folder


def test_events_that_are_not_lineage_are_neither_spooled_nor_sent(tmp_path):
    server = Receiver()
    cfg = config(tmp_path, lineage_sink(base_url(server)))
    try:
        notifier = Notifier(cfg)
        notifier.emit("nbmill.model.registered", "models/m/1", {"run_id": RUN_ID, "model": "m"})
        step = step_data()
        del step["pipeline"]  # the parent job is unknown: no child run can be named
        notifier.emit("nbmill.step.completed", f"runs/{RUN_ID}/steps/train", step)
        notifier.emit("nbmill.run.started", f"runs/{RUN_ID}", {"run_id": RUN_ID, "pipeline": "p"})
        notifier.close()
    finally:
        server.close()
    assert [b["eventType"] for b in bodies(server)] == ["START"]
    assert Spool(cfg.spool_dir).pending() == []


@pytest.mark.parametrize(("retries", "delivered"), [(0, False), (1, True)])
def test_a_refusing_server_is_retried_by_nbmill_alone(tmp_path, retries, delivered):
    server = Receiver(refuse=1, status=503)
    cfg = config(tmp_path, lineage_sink(base_url(server), retries=retries))
    try:
        notifier = Notifier(cfg, stderr=io.StringIO())
        notifier.emit("nbmill.run.started", f"runs/{RUN_ID}", {"run_id": RUN_ID, "pipeline": "p"})
        notifier.close()
    finally:
        server.close()
    assert server.attempts == retries + 1  # the client's own retries are off: no hidden attempts
    assert [b["eventType"] for b in bodies(server)] == (["START"] if delivered else [])
    assert len(Spool(cfg.spool_dir).pending()) == (0 if delivered else 1)


def test_a_down_server_loses_nothing_and_retry_delivers_later(tmp_path, monkeypatch):
    monkeypatch.setenv(URL_ENV, "http://127.0.0.1:9")  # nothing listens
    monkeypatch.setenv(KEY_ENV, KEY)
    sink = lineage_sink(
        EnvRef(f"${{env:{URL_ENV}}}"), retries=1, api_key=EnvRef(f"${{env:{KEY_ENV}}}")
    )
    cfg = config(tmp_path, sink)
    errors = io.StringIO()
    notifier = Notifier(cfg, stderr=errors)
    event = notifier.emit(
        "nbmill.run.started", f"runs/{RUN_ID}", {"run_id": RUN_ID, "pipeline": "training"}
    )
    notifier.close()
    ((name, path),) = Spool(cfg.spool_dir).pending()
    assert name == "lineage" and json.loads(path.read_text()) == event
    assert "nbmill events retry" in errors.getvalue() and "ConnectionError" in errors.getvalue()
    assert "127.0.0.1:9" not in errors.getvalue() and KEY not in errors.getvalue()

    server = Receiver()
    monkeypatch.setenv(URL_ENV, base_url(server))
    try:
        delivered, problems = retry_spooled(cfg)
    finally:
        server.close()
    assert (delivered, problems) == (1, [])
    (got,) = server.received
    assert got["body"]["eventType"] == "START"
    assert got["body"]["run"]["runId"] == openlineage.run_uuid(RUN_ID)
    assert got["body"]["eventTime"] == event["time"]
    assert got["headers"]["Authorization"] == f"Bearer {KEY}"
    assert Spool(cfg.spool_dir).pending() == []


def test_a_run_id_maps_to_one_stable_uuid_per_run_and_per_step():
    first = openlineage.run_uuid(RUN_ID)
    assert first == openlineage.run_uuid(RUN_ID) and uuid.UUID(first).version == 5
    assert first != openlineage.run_uuid(RUN_ID[:-1] + "9")
    assert first != openlineage.run_uuid(RUN_ID, "train") != openlineage.run_uuid(RUN_ID, "prep")


# -- configuration ------------------------------------------------------------------------------


def write_config(tmp_path, entry: dict) -> None:
    (tmp_path / "nbmill.yml").write_text(yaml.safe_dump({"notify": [entry]}))


def test_an_openlineage_sink_is_read_from_nbmill_yml(tmp_path):
    write_config(
        tmp_path,
        {
            "name": "lineage",
            "type": "openlineage",
            "url": "http://marquez:5000",
            "namespace": "diabetes",
            "api_key": "${env:NBMILL_LINEAGE_KEY}",
            "events": ["nbmill.run.*"],
        },
    )
    (sink,) = load_config(tmp_path).sinks
    assert (sink.type, sink.url, sink.namespace) == (
        "openlineage",
        "http://marquez:5000",
        "diabetes",
    )
    assert sink.api_key == "${env:NBMILL_LINEAGE_KEY}" and sink.api_key.name == "NBMILL_LINEAGE_KEY"
    assert sink.endpoint == "api/v1/lineage" and sink.events == ("nbmill.run.*",)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"api_key": "sk-in-clear"}, "'api_key' must be an environment reference"),
        ({"url": "marquez:5000"}, "'url' must be the lineage server's http"),
        ({"url": None}, "'url' must be the lineage server's http"),
        ({"url": "http://me:pw@marquez:5000"}, "'url' must not carry credentials"),
        ({"format": "slack"}, "unknown field 'format'"),
        ({"namespace": ""}, "'namespace' must be a non-empty name"),
    ],
)
def test_a_bad_openlineage_sink_is_refused_naming_the_field(tmp_path, entry, message):
    write_config(
        tmp_path, {"name": "lineage", "type": "openlineage", "url": "http://m:5000", **entry}
    )
    with pytest.raises(ConfigError, match=f"notify 'lineage': {message}|notify #1: {message}"):
        load_config(tmp_path)


def test_openlineage_fields_on_a_webhook_are_refused(tmp_path):
    write_config(tmp_path, {"name": "team", "type": "webhook", "url": "${env:X}", "namespace": "n"})
    with pytest.raises(ConfigError, match="unknown field .namespace.*; namespace: for type: openl"):
        load_config(tmp_path)
