"""``archive verify``: everything the archive holds, checked from its own bytes. Each record's
files against its manifest, each run.json against the run's final event in the archive's
ledger (its sha256 and its file list, as ``nbmill verify`` checks a local record), the
ledger's chain, and the chain against its anchors. Every problem is named, not only the first."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from nbmill.archive import anchors, ledger
from nbmill.archive.base import Archive
from nbmill.archive.mirror import Mirror
from nbmill.governance.ledger import LedgerError
from nbmill.records.verify import IntegrityError, final_events, verify_run


@dataclass
class Checked:
    url: str
    records: int = 0
    entries: int = 0
    anchors: int = 0
    problems: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)  # anchors that could not be read

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {"archive": self.url, "ok": self.ok, "records": self.records,
                "ledger_entries": self.entries, "anchors": self.anchors,
                "problems": self.problems, "anchors_not_read": self.unchecked}  # fmt: skip

    def lines(self) -> list[str]:
        if self.problems:
            return [f"BROKEN: {problem}" for problem in self.problems]
        return [
            f"ok: {self.url}: {self.records} records, every file matches its manifest and its "
            "run's final event",
            f"ok: ledger: {self.entries} entries, chain intact",
            f"ok: anchors: {self.anchors} checked, each matches its entry",
        ] + [f"note: {line}" for line in self.unchecked]


def verify_archive(archive: Archive, given: list[anchors.Anchor] = ()) -> Checked:
    """Check the archive whole, from fresh copies (nothing cached is trusted)."""
    done = Checked(archive.url)
    chain: list[dict] = []
    try:
        chain = ledger.verify(archive)
    except LedgerError as exc:
        done.problems.append(f"ledger: {exc}")
        try:
            chain = ledger.entries(archive)
        except LedgerError:
            chain = []
    done.entries = len(chain)
    final = final_events(entry.get("event", {}) for entry in chain if isinstance(entry, dict))
    with tempfile.TemporaryDirectory(prefix="nbmill-verify-") as folder:
        mirror = Mirror(archive, Path(folder))
        ids = mirror.index()
        done.records = len(ids)
        done.problems += mirror.pull(ids)
        mlflow_runs = []
        for run_id in ids:
            run_dir = mirror.runs_dir / run_id
            if any(f"run {run_id}:" in p for p in done.problems):
                continue  # already named: its files are not all there
            try:
                verify_run(run_dir, final, Path(f"{archive.url}/{ledger.LEDGER}"))
            except IntegrityError as exc:
                done.problems.append(f"run {run_id}: {str(exc).replace(folder, archive.url)}")
            info = run_dir / anchors.MLFLOW_JSON
            if info.is_file():
                mlflow_runs.append(json.loads(info.read_text(encoding="utf-8")))
    found, done.unchecked = anchors.from_mlflow(mlflow_runs)
    every = [*found, *given]
    done.anchors = len(every)
    done.problems += anchors.check(every, chain, f"{archive.url}/{ledger.LEDGER}")
    return done
