"""RunRecord: the run folder, its run.json, file hashes, provenance and HTML rendering.

A run folder holds::

    runs/<run-id>/
      run.json               what ran, with which values, by whom, why, and every file's sha256
      notebooks/<step>.ipynb executed notebooks (a failed one shows its error)
      html/<step>.html       the same, rendered for reviewers
      metrics/<step>.json    metrics the notebooks recorded
      environment.txt        the installed distributions, one `name==version` a line
      <outputs>              whatever the steps declared as outputs
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import platform
import secrets
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from nbmill.errors import NbmillError

RUN_JSON = "run.json"
SCHEMA_VERSION = 1


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_run_id(moment: datetime | None = None) -> str:
    """Sortable: UTC time to the millisecond, then 6 random hex digits."""
    moment = moment or utcnow()
    return (
        moment.strftime("%Y%m%dT%H%M%S")
        + f"{moment.microsecond // 1000:03d}Z-"
        + secrets.token_hex(3)
    )


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_path(path: Path, relative_to: Path) -> dict[str, str]:
    """sha256 of a file, or of every file under a folder, keyed by POSIX path in the run."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {p.relative_to(relative_to).as_posix(): sha256_file(p) for p in files}


def tree_digest(folder: Path) -> str:
    """One sha256 for a folder: over its sorted ``relpath sha256`` lines (a model's identity)."""
    lines = [f"{rel} {digest}" for rel, digest in sorted(hash_path(folder, folder).items())]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def hash_tree(root: Path, exclude: tuple[str, ...] = (RUN_JSON,)) -> dict[str, str]:
    hashes = hash_path(root, root)
    return {
        rel: digest
        for rel, digest in hashes.items()
        if rel not in exclude and not Path(rel).name.startswith(".")
    }


def git_info(project_dir: Path) -> dict[str, Any]:
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
    names = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            names[name.lower().replace("_", "-")] = dist.version
    return [f"{name}=={version}" for name, version in sorted(names.items())]


def environment_fingerprint(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def provenance(project_dir: Path, reason: str | None) -> dict[str, Any]:
    git = git_info(project_dir)
    return {
        "who": who(),
        "why": reason or git.get("subject") or "",
        "git": {k: git[k] for k in ("commit", "dirty", "branch")},
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "ci": {
            key: os.environ[key]
            for key in ("TF_BUILD", "BUILD_BUILDID", "BUILD_BUILDNUMBER", "SYSTEM_TEAMPROJECT")
            if key in os.environ
        },
    }


@dataclass
class RunRecord:
    """One run folder and its run.json, saved atomically after every change."""

    dir: Path
    data: dict[str, Any]

    @property
    def id(self) -> str:
        return self.data["id"]

    @property
    def status(self) -> str:
        return self.data["status"]

    def notebook_path(self, step: str) -> Path:
        return self.dir / "notebooks" / f"{step}.ipynb"

    def html_path(self, step: str) -> Path:
        return self.dir / "html" / f"{step}.html"

    def metrics_path(self, step: str) -> Path:
        return self.dir / "metrics" / f"{step}.json"

    def save(self) -> None:
        write_atomic(self.dir / RUN_JSON, json.dumps(self.data, indent=2, sort_keys=False) + "\n")

    @classmethod
    def create(cls, runs_dir: Path, data: dict[str, Any]) -> RunRecord:
        run_id = data.get("id") or new_run_id()
        run_dir = Path(runs_dir).resolve() / run_id
        run_dir.mkdir(parents=True, exist_ok=False)
        (run_dir / "notebooks").mkdir()
        lines = installed_distributions()
        write_atomic(run_dir / "environment.txt", "\n".join(lines) + "\n")
        record = cls(
            run_dir,
            {
                "schema": SCHEMA_VERSION,
                "id": run_id,
                "status": "running",
                **data,
                "environment": {
                    "fingerprint": environment_fingerprint(lines),
                    "distributions": len(lines),
                    "file": "environment.txt",
                    "executable": sys.executable,
                },
            },
        )
        record.save()
        return record

    @classmethod
    def load(cls, run_dir: str | Path) -> RunRecord:
        run_dir = Path(run_dir)
        try:
            data = json.loads((run_dir / RUN_JSON).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NbmillError(f"{run_dir}: no {RUN_JSON} here; is this a run folder?") from None
        except json.JSONDecodeError as exc:
            raise NbmillError(f"{run_dir / RUN_JSON}: not valid JSON ({exc})") from None
        return cls(run_dir, data)


def render_html(notebook: Path, target: Path) -> None:
    """Render an executed notebook to a standalone HTML page for reviewers."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(notebook, as_version=4)
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    write_atomic(target, body)
