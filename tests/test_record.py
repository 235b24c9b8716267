"""Run records: sortable ids, atomic writes, honest hashes and provenance."""

from datetime import UTC, datetime, timedelta

from nbmill.record import RunRecord, hash_tree, new_run_id, sha256_file, who, write_atomic


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


def test_hash_tree_skips_run_json_and_hidden_files(tmp_path):
    (tmp_path / "run.json").write_text("{}")
    (tmp_path / ".lock").write_text("")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.csv").write_text("a\n1\n")
    assert hash_tree(tmp_path) == {"data/x.csv": sha256_file(tmp_path / "data" / "x.csv")}


def test_a_new_record_is_saved_as_running_with_an_environment_fingerprint(tmp_path):
    record = RunRecord.create(tmp_path, {"pipeline": {"name": "p"}})
    loaded = RunRecord.load(record.dir)
    assert loaded.status == "running" and loaded.id == record.dir.name
    assert len(loaded.data["environment"]["fingerprint"]) == 64
    assert (record.dir / "environment.txt").read_text().count("==") == loaded.data["environment"][
        "distributions"
    ]


def test_who_prefers_the_azure_devops_requester(monkeypatch):
    monkeypatch.setenv("BUILD_REQUESTEDFOR", "Ada Lovelace")
    monkeypatch.setenv("BUILD_REQUESTEDFOREMAIL", "ada@example.com")
    assert who() == "Ada Lovelace <ada@example.com>"
    monkeypatch.delenv("BUILD_REQUESTEDFOR")
    assert who() and "Ada" not in who()
