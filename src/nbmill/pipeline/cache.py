"""Incremental runs: a step is skipped when nothing that decides its outputs changed.

A step's key is the sha256 of its parts:

- ``code``: its notebook's code cells (markdown, outputs and metadata do not count);
- ``params``: its resolved parameters;
- ``inputs``: the sha256 of every input file;
- ``environment``: the environment fingerprint (the distributions the run depends on);
- ``modules``: the source of the project's own modules the notebook imports (a package under
  the project folder, such as a package of the project's own models), which the environment
  fingerprint cannot see.

A step's inputs are the files it declares as inputs or, if it declares none, every file the
steps before it wrote: it may read any of them (through ``run_dir``, say).

After a step succeeds, its key is indexed in ``<runs>/.cache/<pipeline>/<step>/<key>.json``. A
later run finds it there, checks that the original run's outputs still hash as recorded, and
then copies them (and the step's metrics) instead of executing the notebook. A step is only
indexed when nbmill knows everything it wrote into the run folder: one that wrote files its
outputs do not declare (writes.py) is indexed as ``<key>.undeclared.json``, which is a miss that
names those files. Steps with side effects outside the run folder say ``cache: false``.
"""

from __future__ import annotations

import importlib.machinery
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbmill._fs import clone_or_copy, write_json
from nbmill._hashing import canonical, hash_path, sha256_text
from nbmill.pipeline.kernels import notebook_imports
from nbmill.project.notebook import cell_source, code_cells, read_notebook
from nbmill.project.spec import Step
from nbmill.records import runjson

CACHE_DIR = ".cache"
PARTS = ("code", "params", "inputs", "environment", "modules")
UNDECLARED = ".undeclared.json"  # the index entry of an execution that wrote undeclared files


def code_digest(notebook: Path) -> str:
    """sha256 of the notebook's code cells, in order; nothing else of the notebook counts."""
    return sha256_text(canonical([cell_source(c) for c in code_cells(read_notebook(notebook))]))


def project_modules(notebook: Path, project_dir: Path) -> dict[str, str]:
    """top-level module -> sha256 of its source, for each module the notebook imports that
    lives under the project folder (outside any virtual environment in it). Modules are looked
    for as the kernel finds them: beside the notebook first, then on the path."""
    project_dir = Path(project_dir).resolve()
    search = [str(Path(notebook).parent), *sys.path]
    digests: dict[str, str] = {}
    for name in notebook_imports(notebook):
        top = name.split(".")[0]
        if top in digests or top in sys.builtin_module_names:
            continue
        try:
            spec = importlib.machinery.PathFinder.find_spec(top, search)  # imports nothing
        except (ImportError, ValueError):
            continue
        if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
            continue
        origin = Path(spec.origin).resolve()
        if not origin.is_relative_to(project_dir) or ".venv" in origin.parts:
            continue
        root = origin.parent if origin.name == "__init__.py" else origin
        files = {rel: d for rel, d in hash_path(root, root.parent).items() if rel.endswith(".py")}
        digests[top] = sha256_text(canonical(files))
    return digests


def key_of(parts: dict[str, Any]) -> str:
    return sha256_text(canonical({part: parts[part] for part in PARTS}))


def step_inputs(step: Step, upstream: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """The input hashes a step is keyed on, from what each step before it wrote (step ->
    path -> sha256): the files under its declared inputs, or all of them if it declares none."""
    written = {rel: digest for files in upstream.values() for rel, digest in files.items()}
    if not step.inputs.paths:
        return dict(sorted(written.items()))
    return {rel: digest for rel, digest in sorted(written.items()) if step.inputs.covers(rel)}


@dataclass(frozen=True)
class Hit:
    """A previous execution of the step with the same key, whose outputs are intact."""

    run_id: str
    run_dir: Path
    entry: dict[str, Any]  # the step's entry in that run's run.json


class Cache:
    """The index of successful step executions under one runs folder."""

    def __init__(self, runs_dir: Path, pipeline: str):
        self.dir = Path(runs_dir) / CACHE_DIR / pipeline

    def has_entries(self, step: str) -> bool:
        """Whether any execution of the step was cached (a cheap look: no key is computed)."""
        folder = self.dir / step
        return folder.is_dir() and any(
            not p.name.endswith(UNDECLARED) for p in folder.glob("*.json")
        )

    def _entry_path(self, step: str, key: str) -> Path:
        return self.dir / step / f"{key}.json"

    def _undeclared_path(self, step: str, key: str) -> Path:
        return self.dir / step / f"{key}{UNDECLARED}"

    def remember(self, step: str, key: str, run_id: str, parts: dict[str, Any]) -> None:
        """Index a successful execution that wrote only what the step declares."""
        self._undeclared_path(step, key).unlink(missing_ok=True)
        write_json(self._entry_path(step, key), {"run_id": run_id, "key": key, "parts": parts})

    def refuse(
        self, step: str, key: str, run_id: str, parts: dict[str, Any], undeclared: list[str]
    ) -> None:
        """Index an execution that wrote files it does not declare: never a hit."""
        self._entry_path(step, key).unlink(missing_ok=True)
        entry = {"run_id": run_id, "key": key, "parts": parts, "undeclared": undeclared}
        write_json(self._undeclared_path(step, key), entry)

    def lookup(self, step: str, parts: dict[str, Any], runs_dir: Path) -> tuple[Hit | None, str]:
        """The execution with these key parts whose outputs are intact, or None; and why."""
        key = key_of(parts)
        path = self._entry_path(step, key)
        if not path.exists():
            refused = _read_entry(self._undeclared_path(step, key))
            if refused is not None:
                return None, _undeclared_reason(refused)
            return None, self._why_new(step, parts)
        found = _read_entry(path)
        if found is None:
            return None, f"its index entry {path} cannot be read (see the warning)"
        run_id = found["run_id"]
        run_dir = Path(runs_dir) / run_id
        try:
            entry = runjson.read(run_dir)["steps"][step]
        except Exception as exc:  # the run was removed or damaged: not a hit, and say so
            return None, f"the run that made it ({run_id}) cannot be read: {exc}"
        if entry.get("status") not in runjson.DONE:
            return None, f"the run that made it ({run_id}) no longer records it as done"
        for rel, digest in (entry.get("outputs") or {}).items():
            path = run_dir / rel
            if not path.is_file() or hash_path(path, run_dir).get(rel) != digest:
                return None, f"output {rel} of run {run_id} changed or is gone"
        return Hit(run_id, run_dir, entry), f"same key as run {run_id}"

    def _why_new(self, step: str, parts: dict[str, Any]) -> str:
        """Which parts differ from the step's most recent execution."""
        folder = self.dir / step
        entries = list(folder.glob("*.json")) if folder.is_dir() else []
        if not entries:
            return "not executed before with these parts (nothing cached for this step)"
        latest = _read_entry(max(entries, key=lambda p: p.stat().st_mtime_ns)) or {}
        before = latest.get("parts") or {}
        return "changed since the last cached execution: " + ", ".join(changed(before, parts))


def _read_entry(path: Path) -> dict[str, Any] | None:
    """An index entry, or None if there is none; a damaged one is a miss, with a warning
    naming the file (the next execution of the step replaces it)."""
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        print(f"warning: {path}: unreadable cache entry ({exc}); a miss", file=sys.stderr)
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("run_id"), str):
        print(f"warning: {path}: not a cache entry (no run_id); a miss", file=sys.stderr)
        return None
    return entry


def _undeclared_reason(entry: dict[str, Any]) -> str:
    files = entry.get("undeclared") or []
    shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
    return (
        f"when it executed in run {entry['run_id']} it wrote files its outputs do not declare "
        f"({shown}), which a cached copy could not restore; declare them as outputs "
        "(a list of paths will do) to cache it"
    )


def changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The key parts that differ, with the names of the params, inputs and modules that do."""
    names = []
    for part in PARTS:
        a, b = before.get(part), after.get(part)
        if canonical(a) == canonical(b):
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            keys = sorted(k for k in {*a, *b} if canonical(a.get(k)) != canonical(b.get(k)))
            names.append(f"{part} ({', '.join(keys)})")
        else:
            names.append(part)
    return names


def copy_outputs(hit: Hit, step: str, run_dir: Path) -> dict[str, str]:
    """Copy a hit's output files, and the metrics and products the step recorded, into this
    run; returns the outputs' hashes (as recorded, and checked by ``lookup``)."""
    files = list(hit.entry.get("outputs") or {})
    for noted in (
        runjson.metrics_path(hit.run_dir, step),
        runjson.products_path(hit.run_dir, step),
    ):
        if noted.is_file():
            files.append(noted.relative_to(hit.run_dir).as_posix())
    for rel in files:
        target = Path(run_dir) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        clone_or_copy(hit.run_dir / rel, target)
    return dict(hit.entry.get("outputs") or {})
