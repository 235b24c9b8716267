"""The ledger is append-only and hash-chained: any edit, deletion or reordering is detected."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from nbmill.governance.ledger import GENESIS, Ledger, LedgerError, verify_ledger


def fill(path: Path, n: int = 5) -> Ledger:
    ledger = Ledger(path)
    for i in range(n):
        ledger.append({"type": "nbmill.run.started", "data": {"i": i, "who": "ada"}})
    return ledger


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def test_entries_chain_from_genesis(tmp_path):
    ledger = fill(tmp_path / "ledger.jsonl")
    entries = list(ledger.entries())
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0]["prev"] == GENESIS
    assert all(b["prev"] == a["hash"] for a, b in zip(entries, entries[1:], strict=False))
    assert verify_ledger(ledger.path) == 5


def test_an_edited_byte_is_found(tmp_path):
    path = fill(tmp_path / "ledger.jsonl").path
    text = lines(path)
    text[2] = text[2].replace('"who":"ada"', '"who":"eve"')
    path.write_text("".join(text))
    with pytest.raises(LedgerError, match=r"entry 3 \(seq 3\): content does not match its hash"):
        verify_ledger(path)


def test_an_edit_to_the_last_entry_is_found(tmp_path):
    path = fill(tmp_path / "ledger.jsonl").path
    text = lines(path)
    text[-1] = text[-1].replace('"i":4', '"i":9')
    path.write_text("".join(text))
    with pytest.raises(LedgerError, match="entry 5 .* edited"):
        verify_ledger(path)


def test_a_deleted_entry_is_found(tmp_path):
    path = fill(tmp_path / "ledger.jsonl").path
    text = lines(path)
    del text[1]
    path.write_text("".join(text))
    with pytest.raises(LedgerError, match="entry 2: sequence number is 3, expected 2"):
        verify_ledger(path)


def test_two_reordered_entries_are_found(tmp_path):
    path = fill(tmp_path / "ledger.jsonl").path
    text = lines(path)
    text[1], text[2] = text[2], text[1]
    path.write_text("".join(text))
    with pytest.raises(LedgerError, match="entry 2: sequence number is 3"):
        verify_ledger(path)


def test_renumbering_after_a_deletion_is_still_found(tmp_path):
    path = fill(tmp_path / "ledger.jsonl").path
    entries = [json.loads(line) for line in lines(path)]
    del entries[1]
    for number, entry in enumerate(entries, start=1):
        entry["seq"] = number
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    with pytest.raises(LedgerError, match="entry 2"):
        verify_ledger(path)


def test_a_line_that_is_not_json_is_named(tmp_path):
    path = fill(tmp_path / "ledger.jsonl").path
    path.write_text(path.read_text() + "garbage\n")
    with pytest.raises(LedgerError, match="ledger.jsonl:6: not a JSON line"):
        verify_ledger(path)


def _append_many(path: str, worker: int, count: int) -> None:
    ledger = Ledger(Path(path))
    for i in range(count):
        ledger.append({"type": "nbmill.step.completed", "data": {"worker": worker, "i": i}})


def test_concurrent_appends_from_processes_keep_one_chain(tmp_path):
    path = tmp_path / "ledger.jsonl"
    workers = [
        multiprocessing.Process(target=_append_many, args=(str(path), w, 40)) for w in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    assert verify_ledger(path) == 160
    seen = {(e["event"]["data"]["worker"], e["event"]["data"]["i"]) for e in Ledger(path).entries()}
    assert len(seen) == 160
