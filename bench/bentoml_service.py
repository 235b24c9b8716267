"""BentoML service for bench/serve.py: the MLflow model folder behind one BentoML API.

It runs in its own virtual environment (.bench-venvs/bentoml, made by bench/serve.py) as
``bentoml serve bentoml_service:Diabetes``. The model is loaded as MLflow's pyfunc, the same
object ``bentoml.mlflow.load_model`` returns, so predictions go through the signature's schema
enforcement as in ``mlflow models serve``.

Request: ``POST /predict`` with ``{"input_data": {"age": [...], ..., "s6": [...]}}``, BentoML's
JSON for a pandas DataFrame in its "columns" orient (one list per column, the size of the other
servers' bodies). Answer: the predictions as a JSON list.

Settings from the environment: BENCH_MODEL_DIR (the MLflow model folder), BENCH_WORKERS
(worker processes; each serves HTTP and predicts), BENCH_QUIET=1 (no access log).
"""

import os
from typing import Annotated

import bentoml
import numpy as np
import pandas as pd
from bentoml.validators import DataframeSchema

QUIET = os.environ.get("BENCH_QUIET") == "1"


@bentoml.service(
    workers=int(os.environ.get("BENCH_WORKERS", "1")),
    logging={"access": {"enabled": not QUIET}},
)
class Diabetes:
    def __init__(self) -> None:
        import mlflow.pyfunc

        self.model = mlflow.pyfunc.load_model(os.environ["BENCH_MODEL_DIR"])

    @bentoml.api
    def predict(
        self, input_data: Annotated[pd.DataFrame, DataframeSchema(orient="columns")]
    ) -> np.ndarray:
        return np.asarray(self.model.predict(input_data))
