"""RunRecord: one run folder and its run.json, saved atomically (and validated) after every
change. The format itself is ``runjson``'s."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbmill._fs import write_atomic
from nbmill._hashing import hash_tree
from nbmill._time import new_run_id
from nbmill.records import runjson
from nbmill.records.provenance import environment


@dataclass
class RunRecord:
    """A run folder and its run.json. Only the thread running the pipeline changes ``data``."""

    dir: Path
    data: dict[str, Any]

    @property
    def id(self) -> str:
        return self.data["id"]

    @property
    def status(self) -> str:
        return self.data["status"]

    def notebook_path(self, step: str) -> Path:
        return runjson.notebook_path(self.dir, step)

    def html_path(self, step: str) -> Path:
        return runjson.html_path(self.dir, step)

    def metrics_path(self, step: str) -> Path:
        return runjson.metrics_path(self.dir, step)

    def step(self, name: str) -> dict[str, Any]:
        return self.data["steps"][name]

    def save(self) -> None:
        runjson.validate(self.data, self.dir / runjson.RUN_JSON)
        write_atomic(self.dir / runjson.RUN_JSON, runjson.dumps(self.data))

    def hash_files(self) -> dict[str, str]:
        """sha256 of every file in the record but run.json itself (and hidden files)."""
        return hash_tree(self.dir, exclude=(runjson.RUN_JSON,))

    @classmethod
    def create(
        cls, runs_dir: Path, data: dict[str, Any], project_dir: Path | None = None
    ) -> RunRecord:
        run_id = data.get("id") or new_run_id()
        run_dir = Path(runs_dir).resolve() / run_id
        run_dir.mkdir(parents=True, exist_ok=False)
        (run_dir / runjson.NOTEBOOKS).mkdir()
        env, lines = environment(Path(project_dir or Path.cwd()))
        write_atomic(run_dir / runjson.ENVIRONMENT_TXT, "\n".join(lines) + "\n")
        record = cls(
            run_dir,
            {
                "schema": runjson.SCHEMA_VERSION,
                "id": run_id,
                "status": "running",
                **data,
                "environment": {**env, "file": runjson.ENVIRONMENT_TXT},
            },
        )
        record.save()
        return record

    @classmethod
    def load(cls, run_dir: str | Path) -> RunRecord:
        return cls(Path(run_dir), runjson.read(Path(run_dir)))
