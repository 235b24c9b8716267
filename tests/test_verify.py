"""verify checks every run against the ledger, reading the ledger a fixed number of times."""

from __future__ import annotations

from nbmill.governance.events import Notifier
from nbmill.governance.ledger import Ledger
from nbmill.pipeline import lifecycle
from nbmill.project.config import load_config
from nbmill.records.record import RunRecord
from nbmill.records.verify import verify
from tests.conftest import run_fields


def finished_run(runs_dir, notifier: Notifier, n: int) -> RunRecord:
    """A record as the runner leaves it: completed, files hashed, its final event in the ledger."""
    record = RunRecord.create(runs_dir, run_fields())
    (record.dir / "out.txt").write_text(f"run {n}\n")
    record.finish_step("prep", "completed")
    record.end(None, 1.0)
    record.seal()
    notifier.emit("nbmill.run.completed", lifecycle.subject(record), lifecycle.run_finished(record))
    return record


def test_verify_reads_the_ledger_twice_however_many_runs_there_are(project, monkeypatch):
    config = load_config(project)
    notifier = Notifier(config)
    for n in range(5):
        finished_run(config.runs_dir, notifier, n)
    reads = []
    real = Ledger.entries

    def counting(self):
        reads.append(self.path)
        return real(self)

    monkeypatch.setattr(Ledger, "entries", counting)
    lines = verify(config.runs_dir, config.ledger)
    assert len(lines) == 1 + 5 and all(line.endswith("files match") for line in lines[1:])
    assert len(reads) == 2  # the chain walk, and one index of each run's final event
