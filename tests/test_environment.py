"""environment.yml is the one environment: it must equal what uv.lock pins."""

import yaml

from nbmill.project.environment import conda_environment, runtime_requirements
from tests.conftest import ROOT


def test_environment_yml_is_generated_from_the_lock_file():
    committed = (ROOT / "environment.yml").read_text()
    assert committed == conda_environment(ROOT), (
        "environment.yml is out of date: run `.venv/bin/python -m nbmill.project.environment`"
    )


def test_environment_yml_pins_every_runtime_dependency():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    names = {pin.split("==")[0] for pin in pip}
    assert {"papermill", "mlflow-skinny", "scikit-learn", "skops"} <= names
    assert all("==" in pin for pin in pip)
    assert pip == runtime_requirements(ROOT)
