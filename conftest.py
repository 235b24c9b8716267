"""Project-wide pytest setup: an isolated MLflow store, and notebooks run in pipeline order."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parent

_store = tempfile.mkdtemp(prefix="nbmill-tests-mlflow-")
# Set before any kernel starts, so notebooks run by the tests (and nbval) inherit it.
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_store}/mlflow.db"


# The monitor notebook judges a live endpoint's collected traffic: tests/test_monitoring.py runs
# it through the runner against a real endpoint and real traffic, not nbval on its own.
collect_ignore = ["notebooks/monitor.ipynb"]


def _pipeline_order() -> list[str]:
    spec = yaml.safe_load((ROOT / "pipelines" / "training.yml").read_text())
    return [Path(step["notebook"]).name for step in spec["steps"].values()]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests first, in the (random) order pytest-randomly gave them; then the notebooks under
    nbval in pipeline order, each one's cells top to bottom: each reads what the one before it
    wrote, and a notebook's cells depend on each other."""
    order = _pipeline_order()

    def key(item: pytest.Item) -> tuple[int, int]:
        name = Path(str(item.fspath)).name
        if name not in order:
            return (0, 0)
        return (order.index(name) + 1, getattr(item, "cell_num", 0))

    items.sort(key=key)  # stable, so the tests keep their order


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Notebooks run on their own (nbval) keep their ledger and deployments out of the project:
    set before nbval starts their kernel."""
    if str(item.fspath).endswith(".ipynb"):
        os.environ["NBMILL_RUNS_DIR"] = f"{_store}/runs"
    else:
        os.environ.pop("NBMILL_RUNS_DIR", None)
