"""nbmill knows nothing of the example project: a second project, a classifier with its own
step names, folders and package, gets the same lineage, run page, reproduction and Azure ML
dry run, found from what its code recorded (``tracking.record_product``), not from paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import load_run, nbmill, write_notebook

pytestmark = pytest.mark.slow

CLFKIT = '''"""The iris classifier: pure functions, as a team's own package would hold them."""

import pandas as pd
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def load() -> pd.DataFrame:
    frame = load_iris(as_frame=True).frame
    frame.columns = [*FEATURES, "species"]
    return frame


def fit(frame: pd.DataFrame, c: float) -> LogisticRegression:
    return LogisticRegression(C=c, max_iter=1000).fit(frame[FEATURES], frame["species"])


def accuracy(model, frame: pd.DataFrame) -> float:
    return float((model.predict(frame[FEATURES]) == frame["species"]).mean())


def log_model(model, frame: pd.DataFrame) -> str:
    import tempfile
    from pathlib import Path

    import mlflow.sklearn
    from mlflow.models import infer_signature

    from nbmill.models import log_model_files
    from nbmill.models.requirements import model_requirements

    features = frame[FEATURES]
    with tempfile.TemporaryDirectory() as scratch:
        mlflow.sklearn.save_model(
            model,
            f"{scratch}/model",
            signature=infer_signature(features, model.predict(features)),
            pip_requirements=model_requirements("scikit-learn", "numpy", "pandas"),
        )
        return log_model_files(Path(scratch) / "model")


def scorer(frame: pd.DataFrame):
    import mlflow.sklearn

    return lambda path: {"accuracy": accuracy(mlflow.sklearn.load_model(str(path)), frame)}
'''

GATHER = (
    "from clfkit import iris\n"
    "frame = iris.load().sample(frac=1.0, random_state=seed)\n"
    "frame.iloc[:120].to_csv(table_csv, index=False)\n"
    "frame.iloc[120:].to_csv(holdout_csv, index=False)"
)
LEARN = (
    "import pandas as pd\nfrom clfkit import iris\nfrom nbmill import models, tracking\n"
    "frame = pd.read_csv(table_csv)\nmodel = iris.fit(frame, c)\n"
    "with tracking.mlflow_run():\n"
    "    uri = iris.log_model(model, frame)\n"
    "    version = models.register_model(uri, model_name, model_dir=bundle_dir,\n"
    "                                    **models.run_provenance(table_csv))\n"
    "    tracking.log_metrics({'train_accuracy': iris.accuracy(model, frame)})"
)
JUDGE = (
    "import pandas as pd\nfrom clfkit import iris\nfrom nbmill import models, tracking\n"
    "holdout = pd.read_csv(holdout_csv)\n"
    "with tracking.mlflow_run():\n"
    "    decision = models.evaluate_and_gate(model_name, bundle_dir, iris.scorer(holdout),\n"
    "        out_dir=verdict_dir, metric='accuracy', greater_is_better=True,\n"
    "        min_improvement=0.0)"
)
SHIP = (
    "import pandas as pd\nfrom clfkit import iris\nfrom nbmill import serving\n"
    "holdout = pd.read_csv(holdout_csv)\n"
    "result = serving.deploy_candidate(model_name, bundle_dir, release_dir, holdout,\n"
    "                                 iris.FEATURES)"
)
STEPS = {
    "gather": {
        "notebook": "analysis/gather.ipynb",
        "outputs": {"table_csv": "inputs/table.csv", "holdout_csv": "inputs/holdout.csv"},
    },
    "learn": {
        "notebook": "analysis/learn.ipynb",
        "needs": ["gather"],
        "inputs": {"table_csv": "inputs/table.csv"},
        "outputs": {"bundle_dir": "artifacts/clf"},
        "cache": False,
    },
    "judge": {
        "notebook": "analysis/judge.ipynb",
        "needs": ["learn"],
        "inputs": {"holdout_csv": "inputs/holdout.csv", "bundle_dir": "artifacts/clf"},
        "outputs": {"verdict_dir": "verdict"},
        "cache": False,
    },
    "ship": {
        "notebook": "analysis/ship.ipynb",
        "needs": ["judge"],
        "inputs": {"holdout_csv": "inputs/holdout.csv", "bundle_dir": "artifacts/clf"},
        "outputs": {"release_dir": "release"},
        "cache": False,
    },
}


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """The project, run once through the real command."""
    root = tmp_path_factory.mktemp("classifier")
    (root / "pipelines").mkdir()
    package = root / "lib" / "clfkit"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "iris.py").write_text(CLFKIT)
    (root / "nbmill.yml").write_text(yaml.safe_dump({"code_paths": ["lib"]}))
    (root / "environment.yml").write_text(
        "name: classifier\nchannels: [conda-forge]\ndependencies:\n  - python=3.11\n  - pip\n"
        "  - pip: [nbmill, scikit-learn, pandas]\n"
    )
    name = "iris-clf-second-project"
    cells = {"gather": GATHER, "learn": LEARN, "judge": JUDGE, "ship": SHIP}
    parameters = {
        "gather": "seed = 0\ntable_csv = ''\nholdout_csv = ''",
        "learn": "c = 1.0\nmodel_name = ''\ntable_csv = ''\nbundle_dir = ''",
        "judge": "model_name = ''\nholdout_csv = ''\nbundle_dir = ''\nverdict_dir = ''",
        "ship": "model_name = ''\nholdout_csv = ''\nbundle_dir = ''\nrelease_dir = ''",
    }
    for step, body in STEPS.items():
        write_notebook(root / body["notebook"], parameters[step], cells[step])
    spec = {"name": "classify", "params": {"model_name": name}, "steps": STEPS}
    (root / "pipelines" / "classify.yml").write_text(yaml.safe_dump(spec))
    env = {"PYTHONPATH": str(root / "lib")}
    done = nbmill("run", "pipelines/classify.yml", "--reason", "second project", cwd=root, env=env)
    assert done.returncode == 0, done.stderr
    (run_dir,) = [p for p in (root / "runs").iterdir() if (p / "run.json").exists()]
    return {"root": root, "run_dir": run_dir, "name": name, "env": env}


def test_each_step_records_what_it_produced_under_the_project_s_own_folders(classifier):
    run = load_run(classifier["run_dir"])
    produced = {step: entry.get("products") for step, entry in run["steps"].items()}
    assert produced == {
        "gather": None,
        "learn": {"model": "artifacts/clf"},
        "judge": {"gate": "verdict/gate.json"},
        "ship": {"package": "release"},
    }


def test_lineage_finds_the_gate_the_model_and_the_data_without_the_example_s_paths(classifier):
    done = nbmill(
        "lineage", f"{classifier['name']}@production", "--json",
        cwd=classifier["root"], env=classifier["env"],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    links = json.loads(done.stdout)["links"]
    kinds = {}
    for link in links:
        kinds.setdefault(link["kind"], []).append(link)
    assert kinds["model"][0]["ok"] is True  # the run's artifacts/clf hashes as registered
    (gate,) = kinds["gate"]
    assert gate["label"] == "version 1 promoted" and gate["ok"] is True
    assert sorted(link["label"] for link in kinds["data"]) == [
        "inputs/holdout.csv",
        "inputs/table.csv",
    ]  # the model folder the later steps read is the run's own product, not data
    assert not [link for link in links if link["ok"] is False]


def test_the_run_page_shows_the_gate_decision(classifier):
    page = (classifier["run_dir"] / "index.html").read_text()
    assert '<h2 id="gate">' in page and "verdict/gate.json" in page


def test_the_run_reproduces_with_the_same_metrics(classifier):
    run_id = classifier["run_dir"].name
    done = nbmill("reproduce", run_id, cwd=classifier["root"], env=classifier["env"])
    assert done.returncode == 0, done.stderr + done.stdout
    assert "train_accuracy" in done.stdout


def test_the_azure_ml_dry_run_puts_the_project_s_own_packages_on_the_path(classifier, tmp_path):
    pytest.importorskip("azure.ai.ml")
    out = tmp_path / "job"
    done = nbmill(
        "run", "pipelines/classify.yml", "--on", "azureml", "--dry-run", "--out", str(out),
        cwd=classifier["root"], env=classifier["env"],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    job = (out / "job.yml").read_text()
    assert "export PYTHONPATH=lib " in job and "diabetes" not in job


def test_nbmill_s_source_names_no_path_of_the_example():
    source = Path(__file__).resolve().parents[1] / "src" / "nbmill"
    for path in source.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for example in ("examples/diabetes", "eval/gate.json", "pipelines/monitoring.yml"):
            assert example not in text, f"{path} names {example}"
