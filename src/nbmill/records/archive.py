"""The record beside its MLflow run: the MLflow UI then shows the rendered notebooks, and a
failed nbmill run does not look finished in MLflow either."""

from __future__ import annotations

import json

from nbmill.records.record import RunRecord
from nbmill.records.runjson import MLFLOW_JSON, RECORD_ARTIFACTS

ARTIFACT_PATH = "nbmill-record"


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
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=info["tracking_uri"])
    run_id = info["run_id"]
    client.set_tag(run_id, "nbmill.status", record.status)
    for name in RECORD_ARTIFACTS:
        item = record.dir / name
        if item.is_dir():
            client.log_artifacts(run_id, str(item), artifact_path=f"{ARTIFACT_PATH}/{name}")
        elif item.is_file():
            client.log_artifact(run_id, str(item), artifact_path=ARTIFACT_PATH)
    if record.status == "interrupted":
        client.set_terminated(run_id, status="KILLED")
    elif record.status != "completed":
        client.set_terminated(run_id, status="FAILED")
    return True
