"""environment.yml, the one environment for local runs, CI and Azure ML, kept equal to uv.lock.

``python -m nbmill.environment`` rewrites environment.yml from pyproject.toml and uv.lock; a
test fails when the two drift apart.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

HEADER = """\
# The one environment for local runs, CI, Azure ML jobs and deployments.
# Generated from pyproject.toml and uv.lock by `python -m nbmill.environment`; do not edit.
name: nbmill
channels:
  - conda-forge
dependencies:
  - python={python}
  - pip
  - pip:
"""


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def locked_versions(lock_file: Path) -> dict[str, str]:
    lock = tomllib.loads(lock_file.read_text(encoding="utf-8"))
    return {p["name"].lower(): p["version"] for p in lock["package"] if "version" in p}


def runtime_requirements(project_dir: Path, extras: tuple[str, ...] = ()) -> list[str]:
    """The project's direct runtime dependencies, pinned to the versions in uv.lock."""
    pyproject = tomllib.loads((project_dir / "pyproject.toml").read_text(encoding="utf-8"))
    project = pyproject["project"]
    wanted = list(project["dependencies"])
    for extra in extras:
        wanted += project.get("optional-dependencies", {}).get(extra, [])
    versions = locked_versions(project_dir / "uv.lock")
    pins = []
    for requirement in wanted:
        name = _name(requirement)
        if name not in versions:
            raise KeyError(f"{name} is in pyproject.toml but not in uv.lock: run `uv lock`")
        pins.append(f"{name}=={versions[name]}")
    return sorted(pins)


def conda_environment(project_dir: Path, python: str = "3.11") -> str:
    lines = [HEADER.format(python=python)]
    lines += [f"    - {pin}\n" for pin in runtime_requirements(project_dir)]
    return "".join(lines)


def main() -> int:
    project_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd()
    (project_dir / "environment.yml").write_text(conda_environment(project_dir), encoding="utf-8")
    print(f"wrote {project_dir / 'environment.yml'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
