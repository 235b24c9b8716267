"""The monitoring pipeline end to end, as the README's demo runs it: train and deploy, serve the
production model with collection on, send held-out traffic (then shifted traffic) with
``nbmill traffic``, and run ``pipelines/monitoring.yml`` on what was collected."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from nbmill._net import free_port
from nbmill.collection import read_lines
from nbmill.governance.ledger import Ledger
from tests.conftest import ROOT, load_run, nbmill

pytestmark = pytest.mark.slow
KEY = "monitoring-test-key"


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """A trained, promoted and deployed model in its own store and runs folder, served with
    collection on."""
    base = tmp_path_factory.mktemp("monitoring")
    env = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{base}/mlflow.db",
        "NBMILL_RUNS_DIR": str(base / "runs"),
        "NBMILL_SERVE_KEY": KEY,
    }
    trained = nbmill(
        "run", "pipelines/training.yml", "--reason", "monitoring test", cwd=ROOT, env=env
    )
    assert trained.returncode == 0, trained.stderr
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "nbmill", "serve", "diabetes-ridge@production", "--port", str(port)]
        + ["--collect-dir", str(base / "collected")],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            break
        except OSError:
            assert server.poll() is None, server.stderr.read()
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.2)
    yield {"base": base, "env": env, "url": url}
    server.terminate()
    server.wait(30)


def monitor(deployed, since: str) -> subprocess.CompletedProcess:
    return nbmill(
        "run",
        "pipelines/monitoring.yml",
        "--fail-on-drift",
        "-p",
        f"monitor.collect_dir={deployed['base'] / 'collected'}",
        "-p",
        f"monitor.since={since}",
        cwd=ROOT,
        env=deployed["env"],
    )


def latest_run(deployed, pipeline: str) -> Path:
    runs = sorted((deployed["base"] / "runs").glob("*/run.json"))
    return next(
        p.parent for p in reversed(runs) if load_run(p.parent)["pipeline"]["name"] == pipeline
    )


def traffic(deployed, *extra: str) -> subprocess.CompletedProcess:
    sent = nbmill(
        "traffic", "diabetes-ridge@production", "--url", deployed["url"], "--json", *extra,
        cwd=ROOT, env=deployed["env"],
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    return sent


def drift_events(deployed) -> list[dict]:
    ledger = Ledger(deployed["base"] / "runs" / "ledger.jsonl")
    return [e for e in ledger.events() if e["type"] == "nbmill.drift.detected"]


def test_held_out_traffic_is_collected_and_shows_no_drift(deployed):
    since = datetime.now(UTC).isoformat()
    sent = json.loads(traffic(deployed).stdout)
    assert sent["rows"] == 89 and sent["statuses"] == {"200": 89}  # every held-out row once
    time.sleep(1.0)  # the collector writes every quarter second
    inputs = [r for r in read_lines(deployed["base"] / "collected") if r["time"] >= since[:19]]
    assert len(inputs) >= 89 and all(r["modelalias"] == "production" for r in inputs)
    done = monitor(deployed, since)
    assert done.returncode == 0, done.stdout + done.stderr
    verdict = json.loads(
        (latest_run(deployed, "monitoring") / "monitor" / "verdict.json").read_text()
    )
    assert verdict["window"]["requests"] == 89 and verdict["window"]["versions"] == {"1": 89}
    assert [row["column"] for row in verdict["drift"] if row["drifted"]] == []
    assert verdict["health"]["statuses"] == {"200": 89} and verdict["health"]["breaches"] == []


def test_shifted_traffic_drifts_on_the_shifted_feature_fails_the_gate_and_alerts(deployed):
    before = len(drift_events(deployed))
    since = datetime.now(UTC).isoformat()
    traffic(deployed, "--rows", "89", "--shift", "bmi=0.05")
    time.sleep(1.0)
    done = monitor(deployed, since)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "drift detected by step monitor (--fail-on-drift)" in done.stdout
    run_dir = latest_run(deployed, "monitoring")
    verdict = json.loads((run_dir / "monitor" / "verdict.json").read_text())
    drifted = [row["column"] for row in verdict["drift"] if row["drifted"]]
    assert "bmi" in drifted and set(drifted) <= {"bmi", "prediction"}
    events = drift_events(deployed)
    assert len(events) == before + 1
    assert events[-1]["data"]["features"] == ["bmi"] and events[-1]["subject"] == (
        "models/diabetes-ridge/1"
    )
    html = (run_dir / "html" / "monitor.html").read_text()
    assert "bmi" in html and "<img" in html  # the verdict table and the drifted feature's plot
    assert load_run(run_dir)["metrics"]["monitor.drift_detected"] == 1.0
