"""A model Azure can load: a no-code MLflow deployment builds its environment from the model's own
requirements and nothing else, so the model is installed the same way here, into a clean
virtual environment, and loaded and scored there."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from nbmill_example import diabetes
from tests.azureml_runtime import uv

pytestmark = pytest.mark.slow

SCORE = """
import json, sys
import mlflow.pyfunc
import pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
rows = pd.read_json(sys.argv[2], orient="split")
print(json.dumps([float(v) for v in model.predict(rows)]))
import azureml_inference_server_http, azureml.ai.monitoring  # what the deployment serves with
"""


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    base = tmp_path_factory.mktemp("model")
    train, test = diabetes.split(diabetes.load(), test_size=0.2, seed=42)
    model = diabetes.fit(train, alpha=1.0)
    path = diabetes.save_model(model, train, base / "model")
    return {"base": base, "path": path, "test": test, "model": model}


def test_the_models_requirements_name_its_serializer_and_azure_mls_serving_packages(saved):
    names = [
        line.split("==")[0] for line in (saved["path"] / "requirements.txt").read_text().split()
    ]
    for needed in ("mlflow", "scikit-learn", "numpy", "pandas", "skops"):
        assert needed in names
    assert "azureml-inference-server-http" in names and "azureml-ai-monitoring" in names
    assert list(saved["path"].glob("*.skops"))  # saved with skops: loading needs it
    conda = yaml.safe_load((saved["path"] / "conda.yaml").read_text())
    (pip,) = [d["pip"] for d in conda["dependencies"] if isinstance(d, dict)]
    assert [p.split("==")[0] for p in pip] == names  # the same list where Azure ML reads it


def test_the_model_loads_and_scores_in_a_clean_environment_built_from_its_requirements(saved):
    base, path = saved["base"], saved["path"]
    conda = yaml.safe_load((path / "conda.yaml").read_text())
    (python,) = [d for d in conda["dependencies"] if isinstance(d, str) and d.startswith("python")]
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert python.split("=", 1)[1].startswith(here), python
    env = base / "env"
    subprocess.run([uv(), "venv", "-q", "--python", sys.executable, str(env)], check=True)
    subprocess.run(
        [uv(), "pip", "install", "-q", "--python", str(env / "bin" / "python"),
         "-r", str(path / "requirements.txt")],
        check=True, timeout=900,
    )  # fmt: skip
    rows = saved["test"][diabetes.FEATURES]
    (base / "rows.json").write_text(rows.to_json(orient="split", index=False, double_precision=15))
    (base / "score.py").write_text(SCORE)
    done = subprocess.run(
        [str(env / "bin" / "python"), str(base / "score.py"), str(path), str(base / "rows.json")],
        capture_output=True, text=True, timeout=300, cwd=base,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    scored = json.loads(done.stdout.strip().splitlines()[-1])
    expected = saved["model"].predict(rows)
    assert len(scored) == len(expected)
    assert max(abs(a - b) for a, b in zip(scored, expected, strict=True)) < 1e-6
