"""Sinks share one interface: the registry maps nbmill.yml's types to their kinds, a kind added
through it is sent what it accepts, and Azure DevOps switches itself on in Azure Pipelines."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import yaml

from nbmill.governance import sinks
from nbmill.governance.events import Notifier, Spool, new_event, retry_spooled
from nbmill.governance.ledger import verify_ledger
from nbmill.governance.sinks import DeliveryError, Sink, azure_devops, kind_for, webhook
from nbmill.project.config import SINK_TYPES, ConfigError, ProjectConfig, SinkConfig, load_config
from tests.conftest import Receiver


def config(tmp_path, *configured: SinkConfig) -> ProjectConfig:
    runs = tmp_path / "runs"
    return ProjectConfig(tmp_path, runs, runs / "ledger.jsonl", tuple(configured))


def python(code: str, cwd, env: dict[str, str | None]) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter (nothing imported yet), with ``env`` changed (None:
    unset)."""
    environ = dict(os.environ)
    for name, value in env.items():
        environ.pop(name, None)
        if value is not None:
            environ[name] = value
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=environ, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done


# -- the registry -------------------------------------------------------------------------------


def test_each_type_nbmill_yml_accepts_maps_to_its_kind(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_BUILD", raising=False)
    (tmp_path / "nbmill.yml").write_text(
        yaml.safe_dump(
            {
                "notify": [
                    {"name": "team", "type": "webhook", "url": "${env:NBMILL_TEST_HOOK_URL}"},
                    {"name": "devops", "type": "azure-devops"},
                    {"name": "lineage", "type": "openlineage", "url": "http://marquez:5000"},
                ]
            }
        )
    )
    built = Notifier(load_config(tmp_path)).sinks
    assert [(s.name, type(s).__name__, s.background) for s in built] == [
        ("team", "Webhook", True),
        ("devops", "AzureDevOps", False),
        ("lineage", "OpenLineage", True),
    ]
    for sink_type in SINK_TYPES:  # nbmill.yml accepts no type the registry cannot send to
        assert issubclass(kind_for(sink_type), Sink)


def test_an_unknown_sink_type_is_refused_naming_the_known_ones(tmp_path):
    known = "types: webhook, azure-devops, openlineage"
    with pytest.raises(ConfigError, match=f"no sink kind for type 'pagerduty' \\({known}"):
        kind_for("pagerduty")
    with pytest.raises(ConfigError, match="notify 'pager': no sink kind for type 'pagerduty'"):
        Notifier(config(tmp_path, SinkConfig("pager", "pagerduty")))


def test_a_taken_type_or_a_class_that_is_not_a_sink_is_not_registered():
    with pytest.raises(ValueError, match="sink type 'webhook' is already registered"):
        sinks.register("webhook", webhook.Webhook)
    with pytest.raises(TypeError, match="sink type 'pager': expected a Sink subclass"):
        sinks.register("pager", dict)
    assert "pager" not in sinks.KINDS


# -- a kind added through the registry ----------------------------------------------------------


class Pager(Sink):
    """A pager: POSTs the event's subject, for the events asked for that are urgent."""

    def accepts(self, event):
        return super().accepts(event) and event["data"].get("severity") == "high"

    def send(self, event):
        body = json.dumps({"page": event["subject"], "type": event["type"]}).encode()
        request = urllib.request.Request(self.url(), data=body, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s):
                pass
        except (urllib.error.URLError, OSError) as exc:
            raise DeliveryError(f"{type(exc).__name__}") from None


@pytest.fixture
def pager():
    sinks.register("pager", Pager)
    yield
    sinks.KINDS.pop("pager")


def paging(url: str, retries: int = 0) -> SinkConfig:
    events = ("nbmill.run.*", "nbmill.drift.detected")
    return SinkConfig("oncall", "pager", url, events=events, retries=retries, timeout_s=2.0)


def test_a_kind_added_through_the_registry_gets_the_events_it_accepts_and_only_those(
    tmp_path, pager
):
    server = Receiver()
    cfg = config(tmp_path, paging(server.url))
    try:
        notifier = Notifier(cfg)
        notifier.emit("nbmill.run.failed", "runs/r1", {"severity": "high"})
        notifier.emit("nbmill.run.completed", "runs/r2", {"severity": "low"})  # not urgent
        notifier.emit("nbmill.step.failed", "runs/r3/steps/a", {"severity": "high"})  # not asked
        notifier.emit("nbmill.drift.detected", "models/m/1", {"severity": "high"})
        notifier.close()
    finally:
        server.close()
    assert [r["body"] for r in server.received] == [
        {"page": "runs/r1", "type": "nbmill.run.failed"},
        {"page": "models/m/1", "type": "nbmill.drift.detected"},
    ]
    assert verify_ledger(cfg.ledger) == 4  # the ledger has every event, whatever the sinks take
    assert Spool(cfg.spool_dir).pending() == []


def test_a_kind_added_through_the_registry_is_spooled_and_retried_like_the_others(tmp_path, pager):
    errors = io.StringIO()
    down = config(tmp_path, paging("http://127.0.0.1:9/page", retries=1))  # nothing listens
    notifier = Notifier(down, stderr=errors)
    event = notifier.emit("nbmill.run.failed", "runs/r1", {"severity": "high"})
    notifier.close()
    assert "warning: notify 'oncall': nbmill.run.failed not delivered" in errors.getvalue()
    ((name, path),) = Spool(down.spool_dir).pending()
    assert name == "oncall" and json.loads(path.read_text()) == event

    server = Receiver()
    try:
        delivered, problems = retry_spooled(config(tmp_path, paging(server.url)))
    finally:
        server.close()
    assert (delivered, problems) == (1, [])
    assert [r["body"]["page"] for r in server.received] == ["runs/r1"]
    assert Spool(down.spool_dir).pending() == []


# -- Azure DevOps, and what loads when ----------------------------------------------------------

EMIT = (
    "from nbmill.governance.events import Notifier\n"
    "from nbmill.project.config import load_config\n"
    "notifier = Notifier(load_config('.'))\n"
    "notifier.emit('nbmill.run.completed', 'runs/r1', {'run_id': 'r1'})\n"
    "notifier.close()\n"
)


@pytest.mark.parametrize(
    ("tf_build", "configured", "written"),
    [("True", False, 1), (None, False, 0), (None, True, 1), ("True", True, 1)],
)
def test_azure_devops_commands_are_on_stdout_in_azure_pipelines_or_where_configured(
    tmp_path, tf_build, configured, written
):
    if configured:
        (tmp_path / "nbmill.yml").write_text("notify:\n  - name: ado\n    type: azure-devops\n")
    done = python(EMIT, cwd=tmp_path, env={"TF_BUILD": tf_build})
    assert done.stdout.count("##vso[build.addbuildtag]nbmill-run-completed\n") == written
    assert done.stdout.count("##vso[") == written
    assert verify_ledger(tmp_path / "runs" / "ledger.jsonl") == 1


def test_the_openlineage_client_loads_only_where_an_openlineage_sink_is_configured(tmp_path):
    check = EMIT + (
        "import sys\nprint(sorted({m.split('.')[0] for m in sys.modules} & {'openlineage'}))\n"
    )
    hook = "notify:\n  - name: team\n    type: webhook\n    url: ${env:NBMILL_TEST_HOOK_URL}\n"
    (tmp_path / "nbmill.yml").write_text(hook)
    env = {"TF_BUILD": None, "NBMILL_TEST_HOOK_URL": "http://127.0.0.1:9/hook"}
    assert python(check, cwd=tmp_path, env=env).stdout.splitlines()[-1] == "[]"
    (tmp_path / "nbmill.yml").write_text(
        hook + "  - name: lineage\n    type: openlineage\n    url: http://127.0.0.1:9\n"
        "    retries: 0\n"
    )
    assert python(check, cwd=tmp_path, env=env).stdout.splitlines()[-1] == "['openlineage']"


# -- every kind reads an error given as text ----------------------------------------------------


def test_every_kind_says_a_failure_given_as_text_rather_than_the_runners_dict():
    from nbmill.governance.sinks import openlineage

    data = {"run_id": "r1", "pipeline": "p", "error": "kernel died"}
    event = new_event("nbmill.run.failed", "runs/r1", data, "/nbmill/host/project")
    assert webhook.summary(event) == "nbmill.run.failed: runs/r1 — failed: kernel died"
    assert azure_devops.commands(event)[0] == (
        "##vso[task.logissue type=error]nbmill r1: failed: kernel died"
    )
    lineage = openlineage.run_event(event, "ns")
    assert lineage.run.facets["errorMessage"].message == "kernel died"
