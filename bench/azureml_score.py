"""score.py for azureml-inference-server-http (azmlinfsrv), used by bench/serve.py.

It runs in its own virtual environment (.bench-venvs/azmlinfsrv, made by bench/serve.py) that
has no MLflow: azureml-inference-server-http pins opentelemetry versions that conflict with
MLflow's. So it reads the MLflow model folder at AZUREML_MODEL_DIR itself: the MLmodel file names
the sklearn file and its serialization format (skops by default in MLflow 3), and the signature
gives the column order.

Request: Azure ML's shape for MLflow models, ``{"input_data": {"columns": [...], "data":
[[...]]}}``. Answer: ``{"predictions": [...]}``. This is what a hand-written Azure ML score.py for
an MLflow sklearn model typically does: JSON -> pandas DataFrame -> model.predict.
"""

import json
import os
import pickle
from pathlib import Path

import pandas as pd
import yaml
from azureml_inference_server_http.api.aml_response import AMLResponse

model = None
columns: list[str] = []


def init():
    global model, columns
    model_dir = Path(os.environ["AZUREML_MODEL_DIR"])
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text(encoding="utf-8"))
    flavor = mlmodel["flavors"]["sklearn"]
    path = model_dir / flavor["pickled_model"]
    serialization = flavor.get("serialization_format", "cloudpickle")
    if serialization == "skops":
        import skops.io

        model = skops.io.load(path, trusted=flavor.get("skops_trusted_types"))
    elif serialization == "cloudpickle":
        import cloudpickle

        with open(path, "rb") as handle:
            model = cloudpickle.load(handle)
    else:
        with open(path, "rb") as handle:
            model = pickle.load(handle)
    columns = [column["name"] for column in json.loads(mlmodel["signature"]["inputs"])]


def _bad_request(message: str) -> AMLResponse:
    return AMLResponse({"error": message}, 400, json_str=True)


def run(raw_data):
    try:
        split = json.loads(raw_data)["input_data"]
        frame = pd.DataFrame(split["data"], columns=split.get("columns", columns))
    except (ValueError, KeyError, TypeError) as exc:
        shape = "{'input_data': {'columns': [...], 'data': [[...]]}}"
        return _bad_request(f"expected {shape}: {exc}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        return _bad_request(f"missing columns: {', '.join(missing)}")
    try:
        frame = frame[columns].astype("float64")
    except (ValueError, TypeError) as exc:
        return _bad_request(f"non-numeric input: {exc}")
    return {"predictions": model.predict(frame).tolist()}
