"""nbmill as its users install it: the built wheel, in a fresh virtual environment."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from email.parser import Parser

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
UV = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")


def uv(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    done = subprocess.run([UV, *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    uv("build", "--wheel", "--out-dir", str(out), "--package", "nbmill")
    (path,) = out.glob("nbmill-*.whl")
    return path


def test_the_wheel_holds_nbmill_and_its_templates_but_no_example_model(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "nbmill/pipeline/runner.py" in names
    assert "nbmill/records/templates/run.html.j2" in names
    assert not [n for n in names if n.startswith("nbmill_example") or "diabetes" in n]


def test_the_wheel_requires_no_model_library(wheel):
    with zipfile.ZipFile(wheel) as archive:
        (meta,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        message = Parser().parsestr(archive.read(meta).decode())
    required = {
        r.split(";")[0].split(">")[0].split("=")[0].strip()
        for r in message.get_all("Requires-Dist")
    }
    assert {"papermill", "mlflow-skinny", "prometheus-client"} <= required
    assert not required & {"scikit-learn", "matplotlib", "mlflow", "skops"}


def test_a_fresh_environment_with_the_wheel_imports_and_runs_without_them(wheel, tmp_path):
    pins = tmp_path / "pins.txt"
    uv(
        "export",
        "--frozen",
        "--no-dev",
        "--no-default-groups",
        "--no-hashes",
        "--no-emit-workspace",
        "--output-file",
        str(pins),
    )
    venv = tmp_path / "venv"
    uv("venv", "--quiet", str(venv))
    python = str(venv / "bin" / "python")
    uv("pip", "install", "--quiet", "--python", python, "-c", str(pins), str(wheel))
    probe = (
        "import importlib.util\n"
        "import nbmill.cli, nbmill.pipeline.runner, nbmill.models.registry\n"
        "import nbmill.serving.startup\n"
        "print(sorted(m for m in ('sklearn', 'matplotlib') if importlib.util.find_spec(m)))\n"
    )
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]"
    help_ = subprocess.run(
        [str(venv / "bin" / "nbmill"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert help_.returncode == 0 and "run a pipeline of notebooks" in help_.stdout
