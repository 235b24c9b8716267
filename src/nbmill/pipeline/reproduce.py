"""Reproduce a recorded run: the same pipeline and params, executed again, then every metric and
every output hash compared with the original.

The reproduction runs in a sandbox, ``runs/reproductions/``: its own ledger, deployments and
a fresh MLflow store, so it never moves an alias or replaces a deployment, and a training run
is again the first of its model (as the original may have been). Its run.json says
``reproduces: RUN``, and the project's ledger gets ``nbmill.run.reproduced`` naming both runs,
so each links to the other. ``reproduce_run`` is the whole of it, for the command line, a
notebook or a test alike.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from nbmill._environ import environ
from nbmill.errors import NbmillError
from nbmill.records.provenance import environment, git_info

if TYPE_CHECKING:
    from nbmill.pipeline.progress import Progress
    from nbmill.project.config import ProjectConfig

SANDBOX = "reproductions"


@dataclass(frozen=True)
class Reproduction:
    """What ``reproduce_run`` did: the original, the reproduction and its folder, every metric
    and output compared (``compare``'s rows), and what differed in the checkout beforehand."""

    original: str
    reproduction: str
    run_dir: Path
    rows: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)

    @property
    def metrics_differ(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["kind"] == "metric" and r["verdict"] != "equal"]

    @property
    def outputs_differ(self) -> list[str]:
        return [r["name"] for r in self.rows if r["kind"] == "output" and r["verdict"] != "equal"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "original": self.original,
            "reproduction": self.reproduction,
            "run_dir": str(self.run_dir),
            "metrics_equal": not self.metrics_differ,
            "outputs_differ": self.outputs_differ,
            "warnings": self.warnings,
            "rows": self.rows,
        }


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def reproduce_run(
    ref: str,
    config: ProjectConfig,
    *,
    strict: bool = False,
    at_commit: bool = False,
    progress: Progress | None = None,
    warn: Callable[[str], None] = _warn,
) -> Reproduction:
    """Re-execute run ``ref`` (an id, a unique prefix, a folder or ``latest``) of the project
    ``config`` describes, in the sandbox, with its recorded parameters; compare every metric
    and output, and append ``nbmill.run.reproduced`` to the project's ledger.

    A commit or environment that differs from the record is passed to ``warn`` before the run
    (``strict``: refused). ``at_commit``: run from a clean worktree of the recorded commit."""
    from nbmill.governance.events import Notifier
    from nbmill.pipeline.runner import ALL, run
    from nbmill.records.review import find_run

    here = config.project_dir
    original = find_run(config.runs_dir, ref)
    problems = mismatches(original, here)
    if problems and strict and not at_commit:
        raise NbmillError(
            f"run {original['id']}: " + "; ".join(problems) + " (--at-commit runs the recorded one)"
        )
    for problem in problems:
        warn(problem)
    commit = (original.get("git") or {}).get("commit")
    if at_commit and not commit:
        raise NbmillError(f"run {original['id']}: no commit recorded; cannot --at-commit")
    tree = checkout(here, commit) if at_commit else contextlib.nullcontext(here)
    params_file = (original.get("params_file") or {}).get("file")
    with (
        tree as source,
        sandbox(config.runs_dir, source if at_commit else None, config.code_paths) as folder,
    ):
        record = run(
            Path(source) / original["pipeline"]["file"],
            params_path=Path(source) / params_file if params_file else None,
            overrides=overrides(original),
            reason=f"reproduce {original['id']}",
            runs_dir=folder,
            project_dir=source,
            progress=progress,
            force=[ALL],
            reproduces=original["id"],
        )
    result = Reproduction(
        original["id"], record.id, record.dir, compare(original, record.data), problems
    )
    notifier = Notifier(config)
    try:
        notifier.emit(
            "nbmill.run.reproduced",
            f"runs/{original['id']}",
            {
                "run_id": original["id"],
                "reproduction": record.id,
                "reproduction_dir": str(record.dir),
                "metrics_equal": not result.metrics_differ,
                "outputs_differ": result.outputs_differ,
            },
        )
    finally:
        notifier.close()
    return result


def mismatches(original: dict[str, Any], project_dir: Path) -> list[str]:
    """How this checkout and environment differ from the original run's."""
    problems = []
    recorded = (original.get("git") or {}).get("commit")
    now = git_info(project_dir)
    if recorded and now.get("commit") != recorded:
        problems.append(f"commit: the run was at {recorded[:12]}, this tree is at "
                        f"{(now.get('commit') or 'none')[:12]}")  # fmt: skip
    elif now.get("dirty"):
        problems.append("commit: this tree has uncommitted changes")
    fingerprint = (original.get("environment") or {}).get("fingerprint")
    current = environment(project_dir)[0].get("fingerprint")
    if fingerprint and current != fingerprint:
        problems.append(f"environment: the run's fingerprint was {fingerprint[:12]}, "
                        f"this one is {current[:12]}")  # fmt: skip
    return problems


def overrides(original: dict[str, Any]) -> list[str]:
    """The original's resolved parameters, as ``step.name=value`` overrides (YAML values)."""
    found = []
    for step, entry in (original.get("steps") or {}).items():
        for name, value in (entry.get("params") or {}).items():
            text = yaml.safe_dump(value, default_flow_style=True).strip()
            found.append(f"{step}.{name}={text.removesuffix('...').strip()}")
    return found


@contextmanager
def checkout(project_dir: Path, commit: str) -> Iterator[Path]:
    """A clean worktree of ``commit``, removed afterwards, however the block or the checkout
    itself ended (the temporary folder included)."""
    scratch = Path(tempfile.mkdtemp(prefix="nbmill-reproduce-"))
    where = scratch / "tree"
    try:
        _add_worktree(project_dir, commit, where)
        try:
            yield where
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(where)],
                           cwd=project_dir, capture_output=True)  # fmt: skip
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _add_worktree(project_dir: Path, commit: str, where: Path) -> None:
    """``git worktree add``; NbmillError saying why not, and what to do."""
    try:
        done = subprocess.run(
            ["git", "worktree", "add", "--detach", str(where), commit],
            cwd=project_dir, capture_output=True, text=True,
        )  # fmt: skip
    except FileNotFoundError:
        raise NbmillError(f"git worktree add {commit[:12]}: git is not installed") from None
    if done.returncode:
        raise NbmillError(
            f"git worktree add {commit[:12]} in {project_dir}: {done.stderr.strip()} "
            "(fetch that commit into this repository, or reproduce without --at-commit)"
        )


@contextmanager
def sandbox(
    runs_dir: Path, source: Path | None, code_paths: tuple[str, ...] = ()
) -> Iterator[Path]:
    """The environment of a reproduction: its runs folder, a fresh MLflow store, and (for a
    checkout of another commit) that tree's own packages (``code_paths``, nbmill.yml's) on the
    import path of every kernel."""
    folder = Path(runs_dir) / SANDBOX
    folder.mkdir(parents=True, exist_ok=True)
    store = Path(tempfile.mkdtemp(prefix=".store-", dir=folder))
    values: dict[str, str | None] = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}",
        "NBMILL_RUNS_DIR": None,
    }
    if source is not None:
        paths = [str(source / folder) for folder in code_paths]
        if os.environ.get("PYTHONPATH"):
            paths.append(os.environ["PYTHONPATH"])
        values["PYTHONPATH"] = os.pathsep.join(paths)
    with environ(values):
        yield folder


def compare(original: dict[str, Any], again: dict[str, Any]) -> list[dict[str, Any]]:
    """Every metric, and every step output's sha256, of both runs: equal, or by how much."""
    rows = []
    first, second = original.get("metrics") or {}, again.get("metrics") or {}
    for name in sorted(set(first) | set(second)):
        a, b = first.get(name), second.get(name)
        if a is None or b is None:
            verdict = "only in the original" if b is None else "only in the reproduction"
        elif a == b:
            verdict = "equal"
        else:
            scale = max(abs(a), abs(b))
            relative = abs(a - b) / scale if scale and math.isfinite(scale) else math.inf
            verdict = f"differs by {b - a:+.6g} ({relative:.2%})"
        rows.append({"kind": "metric", "name": name, "original": a, "reproduction": b,
                     "verdict": verdict})  # fmt: skip
    for step, entry in (original.get("steps") or {}).items():
        outputs = entry.get("outputs") or {}
        redone = ((again.get("steps") or {}).get(step) or {}).get("outputs") or {}
        for rel in sorted(set(outputs) | set(redone)):
            a, b = outputs.get(rel), redone.get(rel)
            verdict = "equal" if a == b else ("missing" if b is None else "differs")
            rows.append({"kind": "output", "name": rel, "original": (a or "")[:12],
                         "reproduction": (b or "")[:12], "verdict": verdict})  # fmt: skip
    return rows
