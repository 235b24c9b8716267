"""The layout of monitoring's data: collected scoring data in Azure Machine Learning's data
collector layout for online endpoints, so that one reader takes what ``nbmill serve`` collected
and what an Azure ML deployment collected; and the baseline profile saved among a model's files,
which the collected data is judged against.

Files::

    <root>/<endpoint>/<deployment>/<collection>/<yyyy>/<MM>/<dd>/<HH>/<instance>.jsonl

with the collections ``model_inputs`` and ``model_outputs``. Each line is one request, a
CloudEvents-shaped object::

    specversion, id, source, type ("azureml.inference.model_inputs"), datacontenttype, time,
    data (the rows: a list of column-to-value records), correlationid, xrequestid,
    modelversion, collectdatatype, agent, contentrange

nbmill adds what Azure keeps elsewhere, as extra fields of the ``model_inputs`` line:
``modelname``, ``modelalias``, ``status`` (the HTTP status answered) and ``latencyms``, and
``error`` for a refused request. A refused request's line still holds the rows as they were
sent, when they could be read as rows, so that data quality sees what clients send.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nbmill.errors import NbmillError

INPUTS = "model_inputs"
OUTPUTS = "model_outputs"
COLLECTIONS = (INPUTS, OUTPUTS)
EVENT_TYPE = "azureml.inference.{collection}"
PREDICTION = "prediction"  # the column of a single-output model's model_outputs rows
BASELINE_FILE = "baseline.json"  # a model's baseline profile, among its files (extra_files)


def hour_folder(root: Path, endpoint: str, deployment: str, collection: str, at: datetime) -> Path:
    """The folder of one collection's files for the hour of ``at`` (UTC)."""
    return (
        (Path(root) / endpoint / deployment / collection / at.strftime("%Y") / at.strftime("%m"))
        / at.strftime("%d")
        / at.strftime("%H")
    )


def hour_of(path: Path) -> datetime | None:
    """The UTC hour a collected file's folders name (``.../<yyyy>/<MM>/<dd>/<HH>/x.jsonl``)."""
    parts = Path(path).parts[-5:-1]
    try:
        year, month, day, hour = (int(p) for p in parts)
        return datetime(year, month, day, hour, tzinfo=UTC)
    except ValueError:
        return None


def read_lines(root: Path, collection_name: str = INPUTS) -> list[dict[str, Any]]:
    """Every collected line under ``root`` (any endpoint), oldest file first: for small checks."""
    paths = sorted(
        Path(root).glob(f"**/{collection_name}/*/*/*/*/*.jsonl"),
        key=lambda p: (hour_of(p), str(p)),
    )
    lines = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            lines += [json.loads(line) for line in handle if line.strip()]
    return lines


def find_baseline(model_dir: str | Path) -> Path:
    """The baseline profile among a model folder's files (MLflow's ``extra_files``), or an
    error saying how to add one."""
    model_dir = Path(model_dir)
    for candidate in (model_dir / BASELINE_FILE, model_dir / "extra_files" / BASELINE_FILE):
        if candidate.is_file():
            return candidate
    found = sorted(model_dir.rglob(BASELINE_FILE))
    if found:
        return found[0]
    raise NbmillError(
        f"{model_dir}: the model has no {BASELINE_FILE}; log it with "
        f"extra_files=[nbmill.monitor.profile_frame(train, predictions).save(...)]"
    )
