"""RunRecord: one run folder and its run.json, the typed record of a run.

In memory the record is a ``runjson.RunDoc``; it changes only through the methods below, each
one transition of the run (open, start, resume, fail, end, seal) or of one step (start, take
from the cache, finish, its page rendered). Each transition is validated and saved at once,
atomically, so run.json on disk is always the record as it stands. The runner and its scheduler
call them from the one thread that runs the pipeline; everyone else reads ``data``, a copy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from nbmill._fs import write_atomic
from nbmill._hashing import hash_tree
from nbmill._time import iso, new_run_id, utcnow
from nbmill.errors import NbmillError
from nbmill.records import runjson
from nbmill.records.provenance import environment
from nbmill.records.runjson import DONE, RunDoc, StepDoc


class RunRecord:
    """A run folder and its typed run.json."""

    def __init__(self, run_dir: Path, doc: RunDoc):
        self.dir = Path(run_dir)
        self.doc = doc

    # --- reading -------------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self.doc.id

    @property
    def status(self) -> str:
        return self.doc.status

    @property
    def data(self) -> dict[str, Any]:
        """run.json as a dict: a copy, for readers (changing it changes nothing)."""
        return self.doc.model_dump(mode="json", by_alias=True, exclude_unset=True)

    def step(self, name: str) -> StepDoc:
        """A step's entry, to read (change it through the methods below)."""
        return self.doc.steps[name]

    def notebook_path(self, step: str) -> Path:
        return runjson.notebook_path(self.dir, step)

    def html_path(self, step: str) -> Path:
        return runjson.html_path(self.dir, step)

    def metrics_path(self, step: str) -> Path:
        return runjson.metrics_path(self.dir, step)

    def hash_files(self) -> dict[str, str]:
        """sha256 of every file in the record but run.json itself (and hidden files)."""
        return hash_tree(self.dir, exclude=(runjson.RUN_JSON,))

    # --- opening -------------------------------------------------------------------------

    @classmethod
    def create(
        cls, runs_dir: Path, data: dict[str, Any], project_dir: Path | None = None
    ) -> RunRecord:
        """A new run folder, its environment listed, its record saved as ``running``."""
        run_id = data.get("id") or new_run_id()
        run_dir = Path(runs_dir).resolve() / run_id
        run_dir.mkdir(parents=True, exist_ok=False)
        (run_dir / runjson.NOTEBOOKS).mkdir()
        env, lines = environment(Path(project_dir or Path.cwd()))
        write_atomic(run_dir / runjson.ENVIRONMENT_TXT, "\n".join(lines) + "\n")
        fields = {
            "schema": runjson.SCHEMA_VERSION,
            "id": run_id,
            "status": "running",
            **data,
            "environment": {**env, "file": runjson.ENVIRONMENT_TXT},
        }
        return cls.from_data(run_dir, fields).save()

    @classmethod
    def from_data(cls, run_dir: Path, data: dict[str, Any]) -> RunRecord:
        """A record from run.json's fields, validated (NbmillError naming the first bad one)."""
        runjson.validate(data, Path(run_dir) / runjson.RUN_JSON)
        return cls(Path(run_dir), RunDoc.model_validate(data))

    @classmethod
    def load(cls, run_dir: str | Path) -> RunRecord:
        return cls.from_data(Path(run_dir), runjson.read(Path(run_dir)))

    def save(self) -> RunRecord:
        write_atomic(self.dir / runjson.RUN_JSON, runjson.dumps(self.data))
        return self

    def _change(self, target: Any, **fields: Any) -> None:
        """Set fields of the record or of a step's entry. All are validated first: a bad value
        raises NbmillError naming the field, and nothing of the change is kept."""
        try:
            type(target).model_validate({**target.model_dump(by_alias=True), **fields})
        except ValidationError as exc:
            error = exc.errors()[0]
            where = [name for name, s in self.doc.steps.items() if s is target]
            field = ".".join(str(part) for part in error["loc"])
            field = f"steps.{where[0]}.{field}" if where else field
            raise NbmillError(
                f"{self.dir / runjson.RUN_JSON}: not a valid run record: {field}: {error['msg']}"
            ) from None
        for name, value in fields.items():
            setattr(target, name, value)

    # --- the run's transitions -----------------------------------------------------------

    def start(self, runner: dict[str, Any], reproduces: str | None = None) -> None:
        """The run begins: which process runs it (and the run it reproduces, if any)."""
        self._change(self.doc, runner=runner)
        if reproduces:
            self._change(self.doc, reproduces=reproduces)
        self.save()

    def reopen(self, who: str) -> None:
        """Resume: the completed and cached steps stay; every other step is pending again."""
        for name, entry in self.doc.steps.items():
            if entry.status not in DONE:
                self.doc.steps[name] = StepDoc(
                    status="pending", notebook=entry.notebook, params=entry.params
                )
        self._change(
            self.doc, status="running", error=None, ended_at=None, duration_s=None, files=None
        )
        resumed = [*(self.doc.resumed or []), {"at": iso(utcnow()), "who": who}]
        self._change(self.doc, resumed=resumed)
        self.save()

    def fail(self, kind: str, message: str) -> None:
        """The runner itself failed (a bug, a second signal): the run failed, with this error
        unless a step's came first."""
        self._change(self.doc, status="failed")
        if self.doc.error is None:
            error = {"step": "(runner)", "type": kind, "message": message, "cell": None}
            self._change(self.doc, error=error)
        self.save()

    def end(self, signum: int | None, duration_s: float) -> None:
        """However the run ended: steps that never finished are skipped; the status is
        interrupted (a signal), failed (a step, or the runner) or completed."""
        for entry in self.doc.steps.values():
            if entry.status in ("pending", "running"):
                self._change(entry, status="skipped")
        if signum:
            self._change(self.doc, status="interrupted")
            if self.doc.error is None:
                error = {
                    "step": "(runner)",
                    "type": "Interrupted",
                    "message": "the run was interrupted before a step failed",
                    "cell": None,
                }
                self._change(self.doc, error=error)
        elif self.doc.status == "running":
            unfinished = [s for s in self.doc.steps.values() if s.status not in (*DONE, "skipped")]
            failed = unfinished or self.doc.error is not None
            self._change(self.doc, status="failed" if failed else "completed")
        self._change(self.doc, ended_at=iso(utcnow()), duration_s=round(duration_s, 3))
        self.save()

    def seal(self) -> None:
        """The last change: the sha256 of every file in the folder."""
        self._change(self.doc, files=self.hash_files())
        self.save()

    # --- a step's transitions ------------------------------------------------------------

    def key_step(self, name: str, key: str, parts: dict[str, Any]) -> None:
        """The step's cache key and its parts (recorded for every step: --explain and
        --resume read them)."""
        self._change(self.doc.steps[name], key=key, key_parts=parts)

    def leave_out(self, names: list[str]) -> None:
        """Steps this run does not run (``nbmill run --only``, which ``runner.only`` says):
        skipped from the start."""
        for name in names:
            self._change(self.doc.steps[name], status="skipped")
        self.save()

    def start_step(self, name: str) -> None:
        self._change(self.doc.steps[name], status="running", started_at=iso(utcnow()))
        self.save()

    def cache_step(
        self,
        name: str,
        inputs: dict[str, str],
        outputs: dict[str, str],
        cached_from: dict[str, Any],
        metrics: dict[str, float],
        products: dict[str, str] | None = None,
    ) -> None:
        """The step was taken from the cache: its outputs copied from ``cached_from``."""
        now = iso(utcnow())
        fields: dict[str, Any] = dict(
            status="cached",
            started_at=now,
            ended_at=now,
            duration_s=0.0,
            inputs=inputs,
            outputs=outputs,
            cached_from=cached_from,
        )
        if metrics:
            fields["metrics"] = metrics
        if products:
            fields["products"] = products
        self._change(self.doc.steps[name], **fields)
        self._add_metrics(name, metrics)
        self.save()

    def finish_step(
        self,
        name: str,
        status: str,
        *,
        started_at: str | None = None,
        ended_at: str | None = None,
        duration_s: float = 0.0,
        attempts: int = 1,
        inputs: dict[str, str] | None = None,
        outputs: dict[str, str] | None = None,
        undeclared: dict[str, str] | None = None,
        error: dict[str, Any] | None = None,
        executed: str | None = None,
        metrics: dict[str, float] | None = None,
        products: dict[str, str] | None = None,
    ) -> None:
        """The step's execution ended (completed, failed, timed out or interrupted): what it
        read and wrote, and how it went. ``undeclared`` is recorded even when empty: nbmill
        looked, and the step wrote nothing it did not declare."""
        now = iso(utcnow())
        fields: dict[str, Any] = dict(
            status=status,
            started_at=started_at or self.doc.steps[name].started_at or now,
            ended_at=ended_at or now,
            duration_s=duration_s,
            attempts=attempts,
            inputs=inputs or {},
            undeclared=undeclared or {},
        )
        if status == "completed":
            fields["outputs"] = outputs or {}
        if error is not None:
            fields["error"] = error
        if executed is not None:
            fields["executed"] = executed
        if metrics:
            fields["metrics"] = metrics
        if products:
            fields["products"] = products
        self._change(self.doc.steps[name], **fields)
        if error is not None and self.doc.error is None:
            self._change(self.doc, error={"step": name, **error})
        self._add_metrics(name, metrics or {})
        self.save()

    def pages_rendered(self, pages: dict[str, str | None], errors: dict[str, str]) -> None:
        """Each step's rendered page (relative path), or why it could not be rendered."""
        for name, html in pages.items():
            self._change(self.doc.steps[name], html=html)
        for name, why in errors.items():
            self._change(self.doc.steps[name], html_error=why)
        self.save()

    def _add_metrics(self, step: str, metrics: dict[str, float]) -> None:
        if metrics:
            merged = {**self.doc.metrics, **{f"{step}.{k}": v for k, v in metrics.items()}}
            self._change(self.doc, metrics=merged)
