"""Who ran what, where, at which commit and in which environment."""

from __future__ import annotations

import getpass
import json
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from nbmill._fs import user_cache, write_json
from nbmill._hashing import sha256_text

CI_VARIABLES = ("TF_BUILD", "BUILD_BUILDID", "BUILD_BUILDNUMBER", "SYSTEM_TEAMPROJECT")


def git_info(project_dir: Path) -> dict[str, Any]:
    """Commit, dirty flag (tracked files only), branch and subject; all None outside git."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=project_dir, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None, "branch": None, "subject": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": commit,
        "dirty": bool(status),
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        "subject": git("log", "-1", "--format=%s"),
    }


def who() -> str:
    """Azure DevOps' requester when inside a pipeline, else the OS user."""
    requested = os.environ.get("BUILD_REQUESTEDFOR")
    if requested:
        email = os.environ.get("BUILD_REQUESTEDFOREMAIL")
        return f"{requested} <{email}>" if email else requested
    try:
        return getpass.getuser()
    except Exception:  # no login name (e.g. a container without /etc/passwd entry)
        return f"uid:{os.getuid()}"


def installed_distributions() -> list[str]:
    """Every installed distribution as ``name==version``, sorted by normalised name."""
    names = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            names[name.lower().replace("_", "-")] = dist.version
    return [f"{name}=={version}" for name, version in sorted(names.items())]


def environment_fingerprint(lines: list[str]) -> str:
    return sha256_text("\n".join(lines))


def _normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def run_distributions(requirements: list[str]) -> list[str]:
    """``name==version`` of the installed distributions a run depends on: ``requirements`` and
    everything they require in turn (markers evaluated here, extras not followed). Test tools
    and the like, installed beside them, are not among them."""
    from packaging.requirements import InvalidRequirement, Requirement

    installed = {}
    for dist in metadata.distributions():
        if dist.metadata["Name"]:
            installed.setdefault(_normal(dist.metadata["Name"]), dist)
    seen: dict[str, str] = {}
    todo = list(requirements)
    while todo:
        try:
            requirement = Requirement(todo.pop())
        except InvalidRequirement:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = _normal(requirement.name)
        if name in seen or name not in installed:
            continue
        dist = installed[name]
        seen[name] = dist.version
        todo += dist.requires or []
    return [f"{name}=={version}" for name, version in sorted(seen.items())]


def environment(project_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """What run.json says of the environment, and the lines of environment.txt.

    ``fingerprint`` hashes the distributions the run depends on (the project's requirements and
    what they require): it is what decides what a notebook computes, and the cache keys on it.
    ``installed`` hashes everything installed, test tools included. Reading every
    distribution's metadata takes a few tenths of a second, so the answer is kept in the user's
    cache folder until a folder on the import path changes (an install or an upgrade does)."""
    from nbmill.project.environment import requirements_of

    wanted = requirements_of(project_dir) or ["nbmill"]
    stamp = [sys.executable, wanted]
    for entry in sys.path:
        try:
            stamp.append([entry, os.stat(entry).st_mtime_ns])
        except OSError:
            continue
    cached = user_cache("environments") / f"{sha256_text(json.dumps(stamp))}.json"
    if cached.is_file():
        try:
            found = json.loads(cached.read_text(encoding="utf-8"))
            return found["environment"], found["lines"]
        except (ValueError, KeyError):
            pass  # a damaged cache entry is recomputed
    lines = installed_distributions()
    needed = run_distributions(wanted)
    info = {
        "fingerprint": environment_fingerprint(needed),
        "packages": len(needed),
        "installed": environment_fingerprint(lines),
        "distributions": len(lines),
        "executable": sys.executable,
    }
    try:
        write_json(cached, {"environment": info, "lines": lines})
    except OSError:
        pass  # no cache folder to write to: compute it each time
    return info, lines


def provenance(project_dir: Path, reason: str | None) -> dict[str, Any]:
    """The run.json fields that say who, why, at which commit, on which host."""
    git = git_info(project_dir)
    return {
        "who": who(),
        "why": reason or git.get("subject") or "",
        "git": {k: git[k] for k in ("commit", "dirty", "branch")},
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "ci": {key: os.environ[key] for key in CI_VARIABLES if key in os.environ},
    }
