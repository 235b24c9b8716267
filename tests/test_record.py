"""Run records: sortable ids, atomic writes, honest hashes and provenance."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from nbmill._fs import write_atomic
from nbmill._hashing import hash_tree, sha256_file
from nbmill._time import new_run_id
from nbmill.errors import NbmillError
from nbmill.records.provenance import who
from nbmill.records.record import RunRecord
from tests.conftest import run_fields


def test_run_ids_sort_in_time_order():
    t = datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)
    ids = [new_run_id(t + timedelta(milliseconds=ms)) for ms in (0, 1, 999, 60000)]
    assert ids == sorted(ids)
    assert ids[0].startswith("20260102T030405600Z-")


def test_write_atomic_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "sub" / "run.json"
    write_atomic(target, "{}")
    write_atomic(target, '{"a": 1}')
    assert target.read_text() == '{"a": 1}'
    assert [p.name for p in target.parent.iterdir()] == ["run.json"]


def test_a_record_hashes_every_file_but_run_json_and_hidden_files(tmp_path):
    (tmp_path / "run.json").write_text("{}")
    (tmp_path / ".lock").write_text("")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.csv").write_text("a\n1\n")
    expected = {"data/x.csv": sha256_file(tmp_path / "data" / "x.csv")}
    assert RunRecord(tmp_path, None).hash_files() == expected
    assert hash_tree(tmp_path) == {**expected, "run.json": sha256_file(tmp_path / "run.json")}


def test_a_new_record_is_saved_as_running_with_an_environment_fingerprint(tmp_path):
    record = RunRecord.create(tmp_path, run_fields())
    loaded = RunRecord.load(record.dir)
    assert loaded.status == "running" and loaded.id == record.dir.name
    assert len(loaded.data["environment"]["fingerprint"]) == 64
    assert (record.dir / "environment.txt").read_text().count("==") == loaded.data["environment"][
        "distributions"
    ]


def test_a_transition_to_a_value_the_format_does_not_know_is_refused_and_not_kept(tmp_path):
    record = RunRecord.create(tmp_path, run_fields())
    before = (record.dir / "run.json").read_text()
    with pytest.raises(NbmillError, match=r"run.json: not a valid run record: steps.prep.status"):
        record.finish_step("prep", "done", metrics={"rows": 3.0})
    assert (record.dir / "run.json").read_text() == before
    assert record.step("prep").status == "pending" and record.doc.metrics == {}
    record.save()
    assert (record.dir / "run.json").read_text() == before


def test_the_record_in_memory_changes_only_through_its_transitions(tmp_path):
    record = RunRecord.create(tmp_path, run_fields())
    record.data["status"] = "completed"  # a copy: changing it changes nothing
    assert record.status == "running"
    record.start_step("prep")
    record.finish_step("prep", "completed", outputs={"x.csv": "0" * 64}, metrics={"rows": 3})
    record.end(None, 2.0)
    saved = RunRecord.load(record.dir)
    assert saved.status == "completed" and saved.step("prep").outputs == {"x.csv": "0" * 64}
    assert saved.doc.metrics == {"prep.rows": 3.0} and saved.step("prep").undeclared == {}


def test_a_run_json_of_the_wrong_shape_is_refused_naming_the_field(tmp_path):
    record = RunRecord.create(tmp_path, run_fields())
    data = json.loads((record.dir / "run.json").read_text())
    data["metrics"] = {"r2": "high"}
    (record.dir / "run.json").write_text(json.dumps(data))
    with pytest.raises(NbmillError, match=r"not a valid run record: metrics.r2"):
        RunRecord.load(record.dir)


def test_who_prefers_the_azure_devops_requester(monkeypatch):
    monkeypatch.setenv("BUILD_REQUESTEDFOR", "Ada Lovelace")
    monkeypatch.setenv("BUILD_REQUESTEDFOREMAIL", "ada@example.com")
    assert who() == "Ada Lovelace <ada@example.com>"
    monkeypatch.delenv("BUILD_REQUESTEDFOR")
    assert who() and "Ada" not in who()
