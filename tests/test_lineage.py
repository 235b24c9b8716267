"""Lineage and reproduction, end to end on the default pipeline: from the production model back
to its data and commit, every hash checked; a re-run of the run matches every metric."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from nbmill.governance.ledger import Ledger
from tests.conftest import ROOT, load_run, nbmill

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("lineage")
    env = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{base}/mlflow.db",
        "NBMILL_RUNS_DIR": str(base / "runs"),
    }
    done = nbmill("run", "pipelines/training.yml", "--reason", "lineage test", cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr
    (run_dir,) = [p.parent for p in (base / "runs").glob("*/run.json")]
    return {"base": base, "env": env, "run_dir": run_dir}


def lineage(trained, target: str) -> tuple[int, dict]:
    done = nbmill("lineage", target, "--json", cwd=ROOT, env=trained["env"])
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def test_lineage_of_the_production_model_reaches_its_data_and_commit(trained):
    code, chain = lineage(trained, "diabetes-ridge@production")
    assert code == 0
    links = chain["links"]
    kinds = [link["kind"] for link in links]
    assert kinds[:2] == ["model", "run"]
    assert kinds.count("notebook") == 4 and "commit" in kinds and "environment" in kinds
    assert "gate" in kinds and "deployment" in kinds
    run = load_run(trained["run_dir"])
    data = {link["label"]: link for link in links if link["kind"] == "data"}
    assert data["data/train.csv"]["sha256"] == run["files"]["data/train.csv"]
    assert all(
        link["ok"] for link in links if link["kind"] in ("model", "notebook", "data", "gate")
    )
    (commit,) = [link for link in links if link["kind"] == "commit"]
    assert commit["label"] == run["git"]["commit"]
    assert links[1]["label"] == run["id"] and "lineage test" in links[1]["detail"]
    # The same chain from the run, and from the local deployment.
    assert lineage(trained, run["id"])[1]["links"][0]["kind"] == "run"
    assert lineage(trained, "local")[1]["links"][0]["label"] == "diabetes-ridge/1"
    text = nbmill("lineage", "diabetes-ridge@production", cwd=ROOT, env=trained["env"]).stdout
    assert "data/train.csv sha256" in text and run["git"]["commit"] in text


def test_a_file_changed_since_the_run_shows_as_broken(trained, tmp_path):
    data = trained["run_dir"] / "data" / "test.csv"
    saved = tmp_path / "test.csv"
    shutil.copy2(data, saved)
    try:
        data.write_text(data.read_text() + "1,2,3\n")
        code, chain = lineage(trained, "diabetes-ridge@production")
        (link,) = [x for x in chain["links"] if x["label"] == "data/test.csv"]
        assert code == 4 and link["ok"] is False and link["detail"].startswith("changed: now")
        text = nbmill("lineage", "diabetes-ridge@production", cwd=ROOT, env=trained["env"]).stdout
        assert "data/test.csv" in text and "BROKEN" in text
    finally:
        shutil.copy2(saved, data)


def test_an_unknown_target_says_what_a_target_can_be(trained):
    done = nbmill("lineage", "no-such-thing", cwd=ROOT, env=trained["env"])
    assert done.returncode == 1
    assert "not a run, a deployment" in done.stderr and "correlation id" in done.stderr


def test_reproducing_the_default_run_matches_every_metric_and_links_both_ways(trained):
    run = load_run(trained["run_dir"])
    done = nbmill("reproduce", run["id"], "--json", cwd=ROOT, env=trained["env"])
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout[done.stdout.index("{") :])
    metrics = [row for row in result["rows"] if row["kind"] == "metric"]
    assert len(metrics) == len(run["metrics"]) and metrics
    assert all(row["verdict"] == "equal" for row in metrics), metrics
    data = {row["name"]: row["verdict"] for row in result["rows"] if row["kind"] == "output"}
    assert data["data/train.csv"] == "equal" and data["eval/predictions.csv"] == "equal"
    sandbox = trained["base"] / "runs" / "reproductions" / result["reproduction"]
    again = load_run(sandbox)
    assert again["reproduces"] == run["id"] and again["why"] == f"reproduce {run['id']}"
    events = Ledger(trained["base"] / "runs" / "ledger.jsonl").events()
    (reproduced,) = [e for e in events if e["type"] == "nbmill.run.reproduced"]
    assert reproduced["data"]["reproduction"] == result["reproduction"]
    assert reproduced["data"]["metrics_equal"] is True
    # The production alias and the deployment stayed with the original.
    code, chain = lineage(trained, "diabetes-ridge@production")
    assert chain["links"][1]["label"] == run["id"]
    (link,) = [x for x in chain["links"] if x["kind"] == "reproduction"]
    assert link["label"] == result["reproduction"] and "every metric equal" in link["detail"]
    deployed = json.loads((trained["base"] / "runs" / "deployments" / "local.json").read_text())
    assert deployed["run_id"] == run["id"]
    assert Path(sandbox / "notebooks" / "train.ipynb").is_file()
