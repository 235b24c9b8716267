"""environment.yml, the one environment for local runs, CI and Azure ML, kept equal to uv.lock.

``python -m nbmill.project.environment`` rewrites environment.yml from pyproject.toml and uv.lock; a
test fails when the two drift apart.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYTHON = "3.11"  # the Python of environment.yml (Azure ML's curated images run 3.11 too)
HEADER = """\
# The one environment for local runs, CI, Azure ML jobs and deployments.
# Generated from pyproject.toml and uv.lock by `python -m nbmill.project.environment`; do not edit.
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


def locked_versions(lock_file: Path, python: str = PYTHON) -> dict[str, str]:
    """name -> version in uv.lock; where the lock holds several versions of a package (by
    Python version), the one it resolves for ``python`` on Linux."""
    from packaging.markers import Marker

    where = {
        "python_full_version": f"{python}.99",  # the newest patch release of that Python
        "python_version": python,
        "sys_platform": "linux",
        "platform_system": "Linux",
        "implementation_name": "cpython",
        "platform_machine": "x86_64",
    }
    lock = tomllib.loads(lock_file.read_text(encoding="utf-8"))
    versions = {}
    for package in lock["package"]:
        if "version" not in package:
            continue
        markers = package.get("resolution-markers")
        if markers and not any(Marker(m).evaluate(where) for m in markers):
            continue
        versions[package["name"].lower()] = package["version"]
    return versions


def _requirements(project_dir: Path) -> list[str]:
    """What a run needs: the project's dependencies, and those of its default dependency groups
    (the example model), with each workspace package replaced by its own dependencies."""
    pyproject = tomllib.loads((project_dir / "pyproject.toml").read_text(encoding="utf-8"))
    uv = pyproject.get("tool", {}).get("uv", {})
    workspace = {name for name, source in uv.get("sources", {}).items() if source.get("workspace")}
    members = {
        _name(
            tomllib.loads((project_dir / m / "pyproject.toml").read_text())["project"]["name"]
        ): project_dir / m
        for m in uv.get("workspace", {}).get("members", [])
    }
    own = _name(pyproject["project"]["name"])
    wanted = list(pyproject["project"]["dependencies"])
    for group in uv.get("default-groups", []):
        for requirement in pyproject.get("dependency-groups", {}).get(group, []):
            name = _name(requirement)
            if name in workspace and name in members:
                member = tomllib.loads((members[name] / "pyproject.toml").read_text())
                wanted += member["project"]["dependencies"]
            else:
                wanted.append(requirement)
    return [r for r in wanted if _name(r) != own and _name(r) not in members]


def requirements_of(project_dir: Path) -> list[str]:
    """What a run of this project needs (``_requirements``), or [] without a pyproject.toml."""
    if not (Path(project_dir) / "pyproject.toml").is_file():
        return []
    return _requirements(Path(project_dir))


def runtime_requirements(project_dir: Path) -> list[str]:
    """What a run needs, pinned to the versions in uv.lock."""
    versions = locked_versions(project_dir / "uv.lock")
    pins = set()
    for requirement in _requirements(project_dir):
        name = _name(requirement)
        if name not in versions:
            raise KeyError(f"{name} is in pyproject.toml but not in uv.lock: run `uv lock`")
        pins.add(f"{name}=={versions[name]}")
    return sorted(pins)


def conda_environment(project_dir: Path, python: str = PYTHON) -> str:
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
