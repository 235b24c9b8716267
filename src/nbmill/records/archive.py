"""The record beside its MLflow run: the MLflow UI then shows the rendered notebooks, and a
failed nbmill run does not look finished in MLflow either."""

from __future__ import annotations

import json
from functools import cache

from nbmill.records.record import RunRecord
from nbmill.records.runjson import MLFLOW_JSON, RECORD_ARTIFACTS

ARTIFACT_PATH = "nbmill-record"


@cache
def client(tracking_uri: str):
    """An MlflowClient with its store open (the first call for a store takes about a second:
    the import, the database engine, its schema check)."""
    from mlflow.tracking import MlflowClient

    opened = MlflowClient(tracking_uri=tracking_uri)
    opened._tracking_client.store  # noqa: B018 - open it now, not when the record is logged
    return opened


def warm(record: RunRecord) -> None:
    """Open the MLflow store of the run the notebooks opened, if any, ahead of the end."""
    path = record.dir / MLFLOW_JSON
    if path.exists():
        client(json.loads(path.read_text(encoding="utf-8"))["tracking_uri"])


def log_to_mlflow(record: RunRecord) -> bool:
    """Log the record's files to the MLflow run the notebooks opened (``mlflow.json``), tag its
    status, and mark a failed run FAILED (an interrupted one KILLED); False when no step opened
    an MLflow run.

    MLflow is imported only here, and only then: a pipeline that never uses it never pays for
    the import."""
    path = record.dir / MLFLOW_JSON
    if not path.exists():
        return False
    info = json.loads(path.read_text(encoding="utf-8"))
    store = client(info["tracking_uri"])
    run_id = info["run_id"]
    store.set_tag(run_id, "nbmill.status", record.status)
    for name in RECORD_ARTIFACTS:
        item = record.dir / name
        if item.is_dir():
            store.log_artifacts(run_id, str(item), artifact_path=f"{ARTIFACT_PATH}/{name}")
        elif item.is_file():
            store.log_artifact(run_id, str(item), artifact_path=ARTIFACT_PATH)
    if record.status == "interrupted":
        store.set_terminated(run_id, status="KILLED")
    elif record.status != "completed":
        store.set_terminated(run_id, status="FAILED")
    return True
