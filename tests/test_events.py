"""Events are CloudEvents; delivery retries, spools what it cannot send, and leaks no secret."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import pytest

from nbmill.errors import NbmillError
from nbmill.governance import sinks
from nbmill.governance.events import TYPES, Notifier, Spool, filter_events, new_event, retry_spooled
from nbmill.governance.ledger import verify_ledger
from nbmill.governance.sinks import azure_devops, webhook
from nbmill.project.config import ConfigError, ProjectConfig, SinkConfig, load_config
from nbmill.project.secret import EnvRef
from tests.conftest import Receiver

HOOK_ENV = "NBMILL_TEST_HOOK_URL"


def config(tmp_path, *sinks: SinkConfig) -> ProjectConfig:
    runs = tmp_path / "runs"
    return ProjectConfig(tmp_path, runs, runs / "ledger.jsonl", tuple(sinks))


def hook(fmt: str = "cloudevents", retries: int = 3, events=("*",)) -> SinkConfig:
    return SinkConfig(
        "team", "webhook", EnvRef(f"${{env:{HOOK_ENV}}}"), fmt, tuple(events), retries, 2.0
    )


def test_an_event_is_a_cloudevent_with_an_azure_counterpart():
    event = new_event("nbmill.run.completed", "runs/x", {"who": "ada"}, "/nbmill/host/p")
    assert {
        "specversion",
        "id",
        "source",
        "type",
        "time",
        "subject",
        "datacontenttype",
        "data",
    } <= set(event)
    assert event["specversion"] == "1.0" and event["time"].endswith("Z")
    assert all(v.startswith("Microsoft.MachineLearningServices.") for v in TYPES.values())
    assert TYPES["nbmill.drift.detected"].endswith("DatasetDriftDetected")


def test_an_unknown_event_type_is_refused():
    with pytest.raises(NbmillError, match="unknown event type 'nbmill.run.finished'"):
        new_event("nbmill.run.finished", "runs/x", {}, "/s")


def test_a_refusing_receiver_gets_the_event_after_retries(tmp_path, monkeypatch):
    server = Receiver(refuse=2)
    monkeypatch.setenv(HOOK_ENV, server.url)
    try:
        notifier = Notifier(config(tmp_path, hook()), stderr=io.StringIO())
        event = notifier.emit("nbmill.run.failed", "runs/r1", {"who": "ada", "run_id": "r1"})
        notifier.close()
    finally:
        server.close()
    assert server.attempts == 3
    (got,) = server.received
    assert got["body"] == event
    assert got["headers"]["Content-Type"].startswith("application/cloudevents+json")
    assert Spool(tmp_path / "runs" / ".spool").pending() == []
    assert verify_ledger(tmp_path / "runs" / "ledger.jsonl") == 1


def test_a_down_receiver_loses_nothing_and_retry_delivers_later(tmp_path, monkeypatch):
    monkeypatch.setenv(HOOK_ENV, "http://127.0.0.1:9/hook/tok-s3cr3t-0042")  # nothing listens
    errors = io.StringIO()
    cfg = config(tmp_path, hook(retries=1))
    notifier = Notifier(cfg, stderr=errors)
    sent = [notifier.emit("nbmill.step.failed", f"runs/r/steps/{i}", {"i": i}) for i in range(3)]
    notifier.close()
    assert len(Spool(cfg.spool_dir).pending()) == 3
    assert "nbmill events retry" in errors.getvalue()
    assert "tok-s3cr3t-0042" not in errors.getvalue()  # the URL (and its token) is never logged

    server = Receiver()
    monkeypatch.setenv(HOOK_ENV, server.url)
    try:
        delivered, problems = retry_spooled(cfg)
    finally:
        server.close()
    assert (delivered, problems) == (3, [])
    assert sorted(r["body"]["id"] for r in server.received) == sorted(e["id"] for e in sent)
    assert Spool(cfg.spool_dir).pending() == []


def test_the_secret_url_is_nowhere_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv(HOOK_ENV, "http://127.0.0.1:9/hook/tok-s3cr3t-0042")
    notifier = Notifier(config(tmp_path, hook(retries=0)), stderr=io.StringIO())
    notifier.emit("nbmill.run.failed", "runs/r", {"who": "ada"})
    notifier.close()
    for path in (tmp_path / "runs").rglob("*"):
        if path.is_file():
            assert b"tok-s3cr3t-0042" not in path.read_bytes(), path


def test_a_sink_gets_only_the_events_it_asks_for(tmp_path, monkeypatch):
    server = Receiver()
    monkeypatch.setenv(HOOK_ENV, server.url)
    try:
        notifier = Notifier(config(tmp_path, hook(events=["nbmill.run.*"])))
        notifier.emit("nbmill.step.completed", "runs/r/steps/a", {})
        notifier.emit("nbmill.run.completed", "runs/r", {})
        notifier.close()
    finally:
        server.close()
    assert [r["body"]["type"] for r in server.received] == ["nbmill.run.completed"]


@pytest.mark.parametrize("fmt", ["teams", "slack"])
def test_teams_and_slack_get_a_readable_message(fmt):
    event = new_event(
        "nbmill.run.failed",
        "runs/r1",
        {
            "who": "ada",
            "why": "nightly",
            "run_id": "r1",
            "error": {"step": "train", "type": "ValueError", "message": "bad alpha"},
        },
        "/s",
    )
    body, content_type = webhook.payload(fmt, event)
    message = json.loads(body)
    assert content_type == "application/json"
    text = json.dumps(message)
    assert "failed at train: ValueError: bad alpha" in text and "ada" in text
    if fmt == "teams":
        card = message["attachments"][0]
        assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
        assert card["content"]["type"] == "AdaptiveCard"
    else:
        assert message["text"].startswith("nbmill.run.failed: runs/r1")


def test_azure_devops_commands_for_a_failed_run():
    event = new_event(
        "nbmill.run.failed",
        "runs/r1",
        {
            "run_id": "r1",
            "run_dir": "/w/runs/r1",
            "error": {"step": "train", "type": "ValueError", "message": "50% [bad]\nline"},
        },
        "/s",
    )
    lines = azure_devops.commands(event)
    assert lines[0] == (
        "##vso[task.logissue type=error]nbmill r1: step 'train' failed: "
        "ValueError: 50%AZP25 [bad%5D%0Aline"
    )
    assert "##vso[build.addbuildtag]nbmill-run-failed" in lines
    assert (
        "##vso[artifact.upload containerfolder=nbmill-run-r1;artifactname=nbmill-run-r1]/w/runs/r1"
    ) in lines


def test_azure_devops_commands_only_inside_azure_pipelines(tmp_path, monkeypatch):
    out = io.StringIO()
    monkeypatch.delenv("TF_BUILD", raising=False)
    Notifier(config(tmp_path), stdout=out).emit("nbmill.run.completed", "runs/r", {})
    assert out.getvalue() == ""
    monkeypatch.setenv("TF_BUILD", "True")
    Notifier(config(tmp_path), stdout=out).emit("nbmill.run.completed", "runs/r", {})
    assert "##vso[build.addbuildtag]nbmill-run-completed" in out.getvalue()


def test_filter_events_by_type_pattern_subject_and_time():
    events = [
        {"type": "nbmill.run.started", "subject": "runs/a", "time": "2026-11-01T00:00:00.000Z"},
        {
            "type": "nbmill.step.completed",
            "subject": "runs/a/steps/x",
            "time": "2026-11-02T00:00:00.000Z",
        },
        {"type": "nbmill.run.completed", "subject": "runs/b", "time": "2026-11-03T00:00:00.000Z"},
    ]
    assert [e["subject"] for e in filter_events(events, "nbmill.run.*")] == ["runs/a", "runs/b"]
    assert len(filter_events(events, subject="runs/a")) == 2
    assert [e["subject"] for e in filter_events(events, since="2026-11-02")] == [
        "runs/a/steps/x",
        "runs/b",
    ]


def test_a_webhook_url_written_in_clear_is_refused(tmp_path):
    (tmp_path / "nbmill.yml").write_text(
        "notify:\n  - name: team\n    type: webhook\n    url: https://hooks.example/abc\n"
    )
    with pytest.raises(ConfigError, match="notify 'team': 'url' must be an environment reference"):
        load_config(tmp_path)


def test_an_unknown_sink_field_is_named(tmp_path):
    (tmp_path / "nbmill.yml").write_text(
        "notify:\n  - name: team\n    type: webhook\n    url: ${env:X}\n    retrys: 2\n"
    )
    with pytest.raises(ConfigError, match="notify #1: unknown field 'retrys'"):
        load_config(tmp_path)


def test_a_corrupt_spooled_event_is_kept_and_named_and_the_others_are_delivered(
    project, monkeypatch
):
    from tests.conftest import nbmill

    (project / "nbmill.yml").write_text(
        f"notify:\n  - name: team\n    type: webhook\n    url: ${{env:{HOOK_ENV}}}\n"
        "    retries: 0\n"
    )
    monkeypatch.setenv(HOOK_ENV, "http://127.0.0.1:9/hook/tok-s3cr3t-0042")  # nothing listens
    cfg = load_config(project)
    notifier = Notifier(cfg, stderr=io.StringIO())
    sent = [notifier.emit("nbmill.step.failed", f"runs/r/steps/{i}", {"i": i}) for i in range(2)]
    notifier.close()
    corrupt = cfg.spool_dir / "team" / "20261129T021502311000Z-0bad0bad.json"
    corrupt.write_text('{"specversion": "1.0", "id": "2026')  # cut off mid-write

    server = Receiver()
    try:
        done = nbmill("events", "retry", cwd=project, env={HOOK_ENV: server.url})
    finally:
        server.close()
    assert "Traceback" not in done.stderr
    assert done.returncode == 1  # one event is still spooled
    assert f"{corrupt}: not a spooled event" in done.stderr
    assert sorted(r["body"]["id"] for r in server.received) == sorted(e["id"] for e in sent)
    assert [path for _, path in Spool(cfg.spool_dir).pending()] == [corrupt]
    assert "delivered 2 spooled event(s); 1 still spooled" in done.stdout


class BrittleWebhook(webhook.Webhook):
    """A webhook kind with a bug: an event without a run id fails, and the error quotes the URL."""

    def send(self, event):
        if "run_id" not in event["data"]:
            raise RuntimeError(f"no run id to post to {self.url()}")
        super().send(event)


def test_an_unexpected_failure_of_one_delivery_is_said_once_and_later_events_still_go(
    tmp_path, monkeypatch
):
    server = Receiver()
    monkeypatch.setenv(HOOK_ENV, server.url)
    sinks.register("brittle-webhook", BrittleWebhook)
    errors = io.StringIO()
    try:
        notifier = Notifier(
            config(tmp_path, replace(hook(), type="brittle-webhook")), stderr=errors
        )
        for run in ("r1", "r2"):
            notifier.emit("nbmill.run.failed", f"runs/{run}", {"error": "kernel died"})
        notifier.emit("nbmill.run.completed", "runs/r3", {"who": "ada", "run_id": "r3"})
        notifier.close()
    finally:
        server.close()
        sinks.KINDS.pop("brittle-webhook")
    (delivered,) = server.received
    assert "runs/r3" in json.dumps(delivered["body"])
    warnings = errors.getvalue().splitlines()
    assert len(warnings) == 1 and "RuntimeError: no run id to post to <secret>" in warnings[0]
    assert "nbmill events retry" in warnings[0] and "tok-s3cr3t-0042" not in warnings[0]
    assert len(Spool(tmp_path / "runs" / ".spool").pending()) == 2
    assert (notifier.delivered, notifier.failed) == (1, 2)


@pytest.mark.parametrize("fmt", ["teams", "slack"])
def test_a_failure_given_as_text_reaches_teams_and_slack(tmp_path, monkeypatch, fmt):
    server = Receiver()
    monkeypatch.setenv(HOOK_ENV, server.url)
    errors = io.StringIO()
    try:
        notifier = Notifier(config(tmp_path, hook(fmt)), stderr=errors)
        notifier.emit("nbmill.run.failed", "runs/r1", {"error": "kernel died", "who": "ada"})
        notifier.close()
    finally:
        server.close()
    (got,) = server.received
    text = json.dumps(got["body"], ensure_ascii=False)
    assert "nbmill.run.failed: runs/r1 — failed: kernel died — by ada" in text
    assert errors.getvalue() == ""


@pytest.mark.parametrize(
    "address",
    ["hooks.example/hook/tok-s3cr3t-0042", "http://127.0.0.1:port/hook/tok-s3cr3t-0042"],
)
def test_a_malformed_webhook_url_is_a_delivery_error_naming_the_sink_not_the_url(
    tmp_path, monkeypatch, address
):
    monkeypatch.setenv(HOOK_ENV, address)
    errors = io.StringIO()
    cfg = config(tmp_path, hook(retries=0))
    notifier = Notifier(cfg, stderr=errors)
    notifier.emit("nbmill.run.failed", "runs/r1", {"run_id": "r1"})
    notifier.close()
    (warning,) = errors.getvalue().splitlines()
    assert f"webhook 'team': {HOOK_ENV} is not an http(s) URL" in warning
    assert "unexpectedly" not in warning and "tok-s3cr3t-0042" not in warning
    assert len(Spool(cfg.spool_dir).pending()) == 1 and notifier.failed == 1
