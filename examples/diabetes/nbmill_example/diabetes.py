"""Pure functions for the diabetes example: load, split, fit, evaluate, plot."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
TARGET = "target"
REQUIREMENTS = ("scikit-learn", "numpy", "pandas")


def load() -> pd.DataFrame:
    """The 442-row diabetes table that ships with scikit-learn (no download)."""
    return load_diabetes(as_frame=True).frame


def check_columns(frame: pd.DataFrame, needed: list[str] | None = None) -> None:
    needed = needed or [*FEATURES, TARGET]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"missing columns: {', '.join(missing)} (expected {', '.join(needed)})")


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """One row a column: count, mean, spread and missing values, for a reviewer."""
    table = frame.describe().T[["count", "mean", "std", "min", "max"]]
    table["missing"] = frame.isna().sum()
    return table.round(4)


def split(frame: pd.DataFrame, test_size: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be between 0 and 1, got {test_size}")
    check_columns(frame)
    train, test = train_test_split(frame, test_size=test_size, random_state=seed)
    return train.reset_index(drop=True), test.reset_index(drop=True)


def save(frame: pd.DataFrame, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


def read(path: str | Path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    check_columns(frame)
    return frame


def fit(train: pd.DataFrame, alpha: float) -> Pipeline:
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    check_columns(train)
    model = make_pipeline(StandardScaler(), Ridge(alpha=alpha))
    return model.fit(train[FEATURES], train[TARGET])


def evaluate(model: Pipeline, test: pd.DataFrame) -> dict[str, float]:
    check_columns(test)
    predicted = model.predict(test[FEATURES])
    actual = test[TARGET]
    return {
        "r2": float(r2_score(actual, predicted)),
        "rmse": float(np.sqrt(mean_squared_error(actual, predicted))),
        "mae": float(mean_absolute_error(actual, predicted)),
    }


def scorer(test: pd.DataFrame) -> Callable[[str | Path], dict[str, float]]:
    """Scores a saved model folder on ``test``: the same rows for every model a gate compares."""
    return lambda path: evaluate(load_model(path), test)


def predictions(model: Pipeline, test: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"actual": test[TARGET], "predicted": model.predict(test[FEATURES])})


def plot_predictions(table: pd.DataFrame):
    """Predicted against actual, with the line a perfect model would sit on."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(table["actual"], table["predicted"], s=12, alpha=0.7)
    low, high = table.min().min(), table.max().max()
    ax.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1)
    ax.set(xlabel="actual", ylabel="predicted", title="Predicted vs actual (test set)")
    fig.tight_layout()
    return fig


def save_model(model: Pipeline, train: pd.DataFrame, path: str | Path) -> Path:
    """Save in MLflow's format with a signature, the requirements a deployment installs
    (nothing inferred), and the baseline profile of its training data and predictions (for
    monitoring) among its files."""
    import tempfile

    import mlflow.sklearn

    from nbmill.collection import BASELINE_FILE
    from nbmill.models.requirements import model_requirements
    from nbmill.monitor import profile_frame

    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    features = train[FEATURES]
    with tempfile.TemporaryDirectory() as scratch:
        baseline = profile_frame(features, model.predict(features))
        mlflow.sklearn.save_model(
            model,
            str(path),
            signature=signature(model, train),
            pip_requirements=model_requirements(*REQUIREMENTS),
            extra_files=[str(baseline.save(Path(scratch) / BASELINE_FILE))],
        )
    return path


def log_model(model: Pipeline, train: pd.DataFrame) -> str:
    """Save the model (``save_model``) and log its files to the active MLflow run; returns its
    ``runs:/`` URI, for ``nbmill.models.register_model``."""
    import tempfile

    from nbmill.models import log_model_files

    with tempfile.TemporaryDirectory() as scratch:
        return log_model_files(save_model(model, train, Path(scratch) / "model"))


def signature(model: Pipeline, frame: pd.DataFrame):
    from mlflow.models import infer_signature

    features = frame[FEATURES]
    return infer_signature(features, model.predict(features))


def load_model(path: str | Path) -> Pipeline:
    import mlflow.sklearn

    return mlflow.sklearn.load_model(str(path))
