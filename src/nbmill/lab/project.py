"""What the JupyterLab panels show of a project, computed by the library the command line uses:
its pipelines and parameter sets, its runs (read once per change of each run.json), and which
pipeline steps use a notebook with the parameters they would give it, or why they cannot."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from nbmill.errors import NbmillError
from nbmill.records.review import runs_table
from nbmill.records.runjson import RUN_JSON, SCRATCH

PIPELINES, PARAMS = "pipelines", "params"


class OutsideProject(NbmillError):
    """A path that is not inside the project folder."""


def inside(project: Path, rel: str) -> Path:
    """``rel`` resolved inside the project; OutsideProject otherwise (``..``, absolute paths
    elsewhere, links out)."""
    path = (project / rel).resolve()
    if path != project and project not in path.parents:
        raise OutsideProject(f"{rel!r} is outside the project folder {project}")
    return path


def pipelines(project: Path) -> dict[str, Any]:
    """Every pipeline file with its steps (or why it does not load), and the parameter sets."""
    from nbmill.project.spec import load_pipeline, topological_order

    found = []
    for path in sorted((project / PIPELINES).glob("*.y*ml")):
        rel = path.relative_to(project).as_posix()
        try:
            pipeline = load_pipeline(path, project)
        except NbmillError as exc:
            found.append({"path": rel, "name": path.stem, "steps": [], "problem": str(exc)})
            continue
        graph = {name: step.needs for name, step in pipeline.steps.items()}
        steps = [
            {"name": s.name, "notebook": s.notebook.relative_to(project).as_posix(),
             "needs": list(s.needs)}
            for s in (pipeline.steps[name] for name in topological_order(graph))
        ]  # fmt: skip
        found.append({"path": rel, "name": pipeline.name, "steps": steps, "problem": None})
    params = sorted(p.relative_to(project).as_posix() for p in (project / PARAMS).glob("*.y*ml"))
    return {"pipelines": found, "params": params}


def uses(project: Path, notebook: str) -> list[dict[str, Any]]:
    """The pipeline steps that run ``notebook``, each with the parameters the pipeline resolves
    for it (no params file), or the problem that stops the pipeline before anything runs (an
    unknown name, a value of the wrong type)."""
    from nbmill.pipeline.plan import plan

    target = inside(project, notebook)
    found = []
    for entry in pipelines(project)["pipelines"]:
        steps = [s for s in entry["steps"] if inside(project, s["notebook"]) == target]
        if not steps:
            continue
        try:
            planned = plan(project / entry["path"], None, (), None, project)
            problem = None
        except NbmillError as exc:
            planned, problem = None, str(exc)
        for step in steps:
            params = parameters(planned, step["name"], target) if planned else None
            found.append({"pipeline": entry["path"], "step": step["name"],
                          "parameters": params, "problem": problem})  # fmt: skip
    return found


def parameters(planned, step: str, notebook: Path) -> dict[str, dict[str, Any]]:
    """Each parameter the step's notebook declares: the value a run gives it, and where that
    comes from (the notebook's default, the pipeline or params file, or the run folder)."""
    from nbmill.project.notebook import UNKNOWN, declared_parameters

    found = {
        name: {"value": p.source if p.default is UNKNOWN else p.default, "from": "notebook",
               "type": p.type_name}
        for name, p in declared_parameters(notebook).items()
    }  # fmt: skip
    for name, rel in planned.paths[step].items():
        found[name] = {**found.get(name, {}), "value": f"<run folder>/{rel}".rstrip("/"),
                       "from": "run folder"}  # fmt: skip
    for name, value in planned.resolved[step].items():
        found[name] = {**found.get(name, {}), "value": value, "from": "pipeline"}
    return found


class Runs:
    """The runs folder as rows for the runs panel; each run.json is read again only when it
    changed (its mtime and size), so a long list answers from memory."""

    def __init__(self, runs_dir: Path, key_metrics: list[str] | None):
        self.runs_dir, self.key_metrics = Path(runs_dir), key_metrics
        self._cache: dict[str, tuple[tuple[int, int], dict[str, Any]]] = {}
        self._lock = threading.Lock()  # the server's warm-up thread, and its requests

    def rows(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` runs (default: all) as rows; run ids sort by their start, so
        only those runs' run.json are read (and only when they changed)."""
        try:
            names = sorted(
                (e.name for e in os.scandir(self.runs_dir)
                 if e.is_dir() and not e.name.startswith(".") and e.name != SCRATCH),
                reverse=True,
            )  # fmt: skip
        except FileNotFoundError:
            return []
        runs = []
        for name in names:
            if limit and len(runs) >= limit:
                break
            data = self._read(name)
            if data is not None:
                runs.append(data)
        with self._lock:
            for gone in set(self._cache) - set(names):
                del self._cache[gone]
        return runs_table(runs, self.key_metrics)

    def _read(self, name: str) -> dict[str, Any] | None:
        path = self.runs_dir / name / RUN_JSON
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        stamp = (stat.st_mtime_ns, stat.st_size)
        cached = self._cache.get(name)
        if cached is None or cached[0] != stamp:
            try:
                cached = (stamp, json.loads(path.read_text(encoding="utf-8")))
            except ValueError:
                return None  # being written: the next call reads it
            with self._lock:
                self._cache[name] = cached
        return cached[1]
