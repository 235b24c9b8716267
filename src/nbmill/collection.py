"""The layout of collected scoring data: Azure Machine Learning's data collector for online
endpoints, so that one reader takes what ``nbmill serve`` collected and what an Azure ML
deployment collected.

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

from datetime import UTC, datetime
from pathlib import Path

INPUTS = "model_inputs"
OUTPUTS = "model_outputs"
COLLECTIONS = (INPUTS, OUTPUTS)
EVENT_TYPE = "azureml.inference.{collection}"
PREDICTION = "prediction"  # the column of a single-output model's model_outputs rows


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
