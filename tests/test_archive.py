"""The team's archive in Azure Blob Storage, against Azurite (the real storage emulator, started
here on 127.0.0.1), and in a local folder: many writers on one ledger, records pushed whole or
not at all, an account that goes away, tampering, and the readers reading it as a runs folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import nbmill, run_fields, write_notebook

pytest.importorskip("azure.storage.blob", reason="the archive dependency group is not installed")

from azure.storage.blob import BlobType  # noqa: E402

from nbmill._hashing import canonical, hash_path  # noqa: E402
from nbmill.archive import ledger, open_archive  # noqa: E402
from nbmill.archive.base import ArchiveError  # noqa: E402
from nbmill.archive.records import OBJECTS, RECORDS, complete, push  # noqa: E402
from nbmill.governance.events import Notifier  # noqa: E402
from nbmill.governance.ledger import next_entry  # noqa: E402
from nbmill.pipeline import lifecycle  # noqa: E402
from nbmill.project.config import load_config  # noqa: E402
from nbmill.records.record import RunRecord  # noqa: E402
from nbmill.records.verify import verify  # noqa: E402
from tests.azurite import Azurite  # noqa: E402

CONNECTION = "AZURE_STORAGE_CONNECTION_STRING"


@pytest.fixture(scope="module")
def azurite(tmp_path_factory):
    emulator = Azurite(tmp_path_factory.mktemp("azurite"))
    yield emulator
    emulator.stop()


@pytest.fixture
def team(azurite, monkeypatch):
    """A fresh container as the team's archive, its account in the environment."""
    if azurite.process is None:  # a test that stopped it failed before starting it again
        azurite.start()
    monkeypatch.setenv(CONNECTION, azurite.connection_string)
    return f"az://{azurite.new_container()}/team"


def agent(folder: Path, archive: str, gate: Path | None = None) -> Path:
    """A project folder, as one build agent or one person's laptop has it; its one step waits
    for the file ``gate`` (if given) to exist."""
    (folder / "pipelines").mkdir(parents=True)
    cells = ["(Path(run_dir) / 'out.txt').write_text(str(x * 2))"]
    if gate is not None:
        cells.insert(
            0, f"import time\nwhile not Path({str(gate)!r}).exists():\n    time.sleep(0.05)"
        )
    write_notebook(
        folder / "notebooks" / "only.ipynb",
        "x = 1\nrun_dir = ''",
        "from pathlib import Path",
        *cells,
    )
    spec = {"name": "tiny", "steps": {"only": {"notebook": "notebooks/only.ipynb",
                                               "outputs": ["out.txt"]}}}  # fmt: skip
    (folder / "pipelines" / "tiny.yml").write_text(yaml.safe_dump(spec))
    (folder / "nbmill.yml").write_text(yaml.safe_dump({"archive": archive}))
    return folder


def sealed(project: Path, notifier: Notifier, n: int, files: int = 1) -> RunRecord:
    """A record as the runner leaves it: completed, sealed, its final event emitted."""
    record = RunRecord.create(load_config(project).runs_dir, run_fields())
    for i in range(files):
        (record.dir / "data" / f"part-{i}.txt").parent.mkdir(exist_ok=True)
        (record.dir / "data" / f"part-{i}.txt").write_text(f"run {n} part {i}\n" * 200)
    (record.dir / "shared.csv").write_text("a,b\n1,2\n")  # the same bytes in every run
    record.finish_step("prep", "completed")
    record.end(None, 1.0)
    record.seal()
    notifier.emit("nbmill.run.completed", lifecycle.subject(record), lifecycle.run_finished(record))
    return record


def archive_ledger(url: str) -> list[dict]:
    return ledger.entries(open_archive(url))


def blob(azurite: Azurite, url: str, key: str):
    container, _, prefix = url.removeprefix("az://").partition("/")
    return azurite.service().get_blob_client(container, f"{prefix}/{key}")


# -- one ledger, many writers ---------------------------------------------------------------

WRITER = """
import sys
from nbmill.archive import ledger, open_archive
archive = open_archive(sys.argv[1])
for i in range(50):
    ledger.append(archive, {"id": f"w{sys.argv[2]}-{i:02d}", "type": "test", "data": {}})
"""


@pytest.mark.parametrize("where", ["azure", "folder"])
def test_four_processes_appending_fifty_events_each_leave_one_chain_of_200(where, team, tmp_path):
    url = team if where == "azure" else str(tmp_path / "shared")
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, url, str(w)], env=os.environ.copy())
        for w in range(4)
    ]
    assert [w.wait(300) for w in writers] == [0, 0, 0, 0]
    chain = ledger.verify(open_archive(url))
    ids = [entry["event"]["id"] for entry in chain]
    assert len(ids) == 200 and len(set(ids)) == 200  # none lost, none doubled
    assert [entry["seq"] for entry in chain] == list(range(1, 201))
    for w in range(4):  # each writer's own events in its order
        mine = [i for i in ids if i.startswith(f"w{w}-")]
        assert mine == sorted(mine)


def test_an_event_whose_append_went_through_is_not_appended_twice(team):
    archive = open_archive(team)
    first = ledger.append(archive, {"id": "e1", "type": "test", "data": {}})
    again = ledger.append(archive, {"id": "e1", "type": "test", "data": {}})  # a retry
    assert again == first and len(archive_ledger(team)) == 1


# -- two agents, one archive ----------------------------------------------------------------


def test_two_agents_archive_to_one_container_and_each_reads_both(team, tmp_path):
    one, two = agent(tmp_path / "one", team), agent(tmp_path / "two", team)
    for folder in (one, two):
        done = nbmill("run", "pipelines/tiny.yml", "--reason", "two agents", cwd=folder)
        assert done.returncode == 0, done.stderr
        assert "not pushed" not in done.stderr
    ids = {f.name for f in (one / "runs").iterdir() if (f / "run.json").is_file()}
    ids |= {f.name for f in (two / "runs").iterdir() if (f / "run.json").is_file()}
    listed = nbmill("runs", "--json", cwd=one)
    assert listed.returncode == 0, listed.stderr
    assert {run["id"] for run in json.loads(listed.stdout)} == ids and len(ids) == 2
    chain = archive_ledger(team)
    finals = [e["event"]["data"]["run_id"] for e in chain
              if e["event"]["type"] == "nbmill.run.completed"]  # fmt: skip
    assert sorted(finals) == sorted(ids)  # one chain across both agents
    verified = nbmill("archive", "verify", cwd=two)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "2 records" in verified.stdout and "chain intact" in verified.stdout


def test_the_readers_print_from_the_archive_what_they_print_locally(team, tmp_path):
    """One agent runs; another folder, with nothing of its own, reads the archive."""
    local, reader = agent(tmp_path / "local", team), agent(tmp_path / "reader", team)
    done = nbmill("run", "pipelines/tiny.yml", "--reason", "read me", cwd=local)
    assert done.returncode == 0, done.stderr
    (run_id,) = [f.name for f in (local / "runs").iterdir() if (f / "run.json").is_file()]
    notifier = Notifier(load_config(local))  # an alias move, as `nbmill models promote` makes
    notifier.emit("nbmill.model.promoted", "models/tiny/1", {
        "model": "tiny", "alias": "production", "version": "1", "previous_version": None,
        "action": "promote", "who": "reviewer", "why": "beats production", "run_id": run_id,
    })  # fmt: skip
    notifier.close()
    (local / "nbmill.yml").write_text("{}\n")  # from here on, it reads its own runs/
    history = nbmill("models", "history", "tiny", "--json", cwd=reader)
    assert [move["why"] for move in json.loads(history.stdout)] == ["beats production"]
    for command in (["runs", "--json"], ["show", run_id, "--json"],
                    ["events", "--type", "nbmill.run.*", "--json"],
                    ["models", "history", "tiny", "--json"]):  # fmt: skip
        here = nbmill(*command, cwd=local)
        there = nbmill(*command, cwd=reader)
        assert here.returncode == there.returncode == 0, there.stderr
        assert json.loads(there.stdout) == json.loads(here.stdout), command
    verified = nbmill("verify", run_id, cwd=reader)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"run {run_id}: " in verified.stdout and "files match" in verified.stdout
    traced = nbmill("lineage", run_id, "--json", cwd=reader)
    assert traced.returncode == 0, traced.stdout + traced.stderr
    report = nbmill("report", "--json", cwd=reader)
    assert report.returncode == 0, report.stderr
    index = Path(json.loads(report.stdout)["report"])
    assert run_id in index.read_text() and (index.parent / run_id / "html").is_dir()


# -- records pushed whole or not at all -----------------------------------------------------


def test_a_push_killed_half_way_is_completed_once_and_was_never_listed(team, project, azurite):
    (project / "nbmill.yml").write_text(yaml.safe_dump({"archive": team}))
    record = sealed(project, Notifier(load_config(project)), 1, files=600)
    container, _, prefix = team.removeprefix("az://").partition("/")
    client = azurite.service().get_container_client(container)
    pusher = subprocess.Popen(
        [sys.executable, "-m", "nbmill", "archive", "push", record.id],
        cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    listed_partial = []
    while pusher.poll() is None:
        names = [b.name for b in client.list_blobs(name_starts_with=f"{prefix}/")]
        objects = [n for n in names if f"/{OBJECTS}/" in n]
        if any(f"/{RECORDS}/" in n for n in names) and len(objects) < 600:
            listed_partial.append(len(objects))
        if len(objects) >= 50:
            pusher.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    assert pusher.wait(60) == -signal.SIGKILL, "the push ended before it could be cut"
    archive = open_archive(team)
    assert record.id not in complete(archive) and not listed_partial
    runs = nbmill("runs", "--json", cwd=project, env={"NBMILL_ARCHIVE": team})
    assert json.loads(runs.stdout) == []  # not a record while partial
    resumed = nbmill("archive", "push", record.id, "--json", cwd=project)
    assert resumed.returncode == 0, resumed.stderr
    (pushed,) = json.loads(resumed.stdout)["pushed"]
    files = hash_path(record.dir, record.dir)
    assert pushed["already_there"] >= 50 and pushed["sent"] + pushed["already_there"] == len(files)
    assert len(archive.keys(f"{OBJECTS}/")) == len(set(files.values()))  # each file once
    assert list(complete(archive)) == [record.id]
    verified = nbmill("archive", "verify", "--json", cwd=project)
    assert json.loads(verified.stdout)["problems"] == [], verified.stdout


def test_an_object_once_written_is_never_overwritten(team):
    """What the emulator implements of write-once storage: conditional creates."""
    archive = open_archive(team)
    assert archive.put("objects/ab/abc", b"first") is True
    assert archive.put("objects/ab/abc", b"second") is False
    assert archive.read("objects/ab/abc") == b"first"


def test_the_same_file_in_many_runs_is_stored_once(tmp_path, project):
    url = str(tmp_path / "shared")
    (project / "nbmill.yml").write_text(yaml.safe_dump({"archive": url}))
    notifier = Notifier(load_config(project))
    pushed = [push(open_archive(url), sealed(project, notifier, n).dir) for n in range(3)]
    assert ["shared.csv" in p.sent for p in pushed] == [True, False, False]
    again = push(open_archive(url), project / "runs" / pushed[0].run_id)
    assert again.sent == [] and not again.manifest  # pushed twice: nothing sent


# -- the account goes away and comes back ---------------------------------------------------


def test_a_run_while_the_account_is_down_completes_and_arrives_when_it_is_back(
    team, tmp_path, azurite
):
    gate = tmp_path / "go"
    folder = agent(tmp_path / "offline", team, gate)
    running = subprocess.Popen(
        [sys.executable, "-m", "nbmill", "run", "pipelines/tiny.yml", "--reason", "offline"],
        cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not [e for e in archive_ledger(team) if e["event"]["type"] == "nbmill.run.started"]:
            assert time.monotonic() < deadline and running.poll() is None, running.stderr.read()
            time.sleep(0.05)
        azurite.stop()  # the run has begun, and its first event is in the archive
        gate.touch()
        _, stderr = running.communicate(timeout=300)
    finally:
        gate.touch()
        azurite.start()
    done = subprocess.CompletedProcess(running.args, running.returncode, "", stderr)
    assert done.returncode == 0, done.stderr
    assert "not pushed" in done.stderr and "cannot reach the storage account" in done.stderr
    (run_dir,) = [f for f in (folder / "runs").iterdir() if (f / "run.json").is_file()]
    checked = verify(folder / "runs", folder / "runs" / "ledger.jsonl", run_dir)
    assert checked[-1].startswith(f"run {run_dir.name}: ")  # the local record is whole
    assert checked[-1].endswith("files match")
    lines = (folder / "runs" / "ledger.jsonl").read_text().splitlines()
    local_events = [json.loads(line)["event"]["id"] for line in lines]
    spooled = sorted((folder / "runs" / ".spool" / "archive").glob("*.json"))
    assert [path.stem for path in spooled] == local_events[1:]  # the rest wait, in order
    pushed = nbmill("archive", "push", cwd=folder)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert not list((folder / "runs" / ".spool" / "archive").glob("*.json"))
    chain = archive_ledger(team)
    assert [e["event"]["id"] for e in chain] == local_events  # all of them, in their order
    assert list(complete(open_archive(team))) == [run_dir.name]
    assert nbmill("archive", "verify", cwd=folder).returncode == 0


def test_events_waiting_from_an_earlier_run_go_before_the_next_runs(team, project, azurite):
    (project / "nbmill.yml").write_text(yaml.safe_dump({"archive": team}))
    azurite.stop()
    try:
        notifier = Notifier(load_config(project))
        early = notifier.emit("nbmill.run.started", "runs/early", {"run_id": "early"})
        notifier.close()
    finally:
        azurite.start()
    notifier = Notifier(load_config(project))
    late = notifier.emit("nbmill.run.started", "runs/late", {"run_id": "late"})
    notifier.close()
    assert [e["event"]["id"] for e in archive_ledger(team)] == [early["id"], late["id"]]


# -- tampering ------------------------------------------------------------------------------


def tampered_setup(team: str, project: Path, tmp_path: Path) -> tuple[list[RunRecord], str]:
    """Three sealed, pushed records, each with an MLflow run that holds its anchor."""
    from mlflow.tracking import MlflowClient

    (project / "nbmill.yml").write_text(yaml.safe_dump({"archive": team}))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("anchors")
    notifier = Notifier(load_config(project))
    made = []
    for n in range(3):
        record = RunRecord.create(load_config(project).runs_dir, run_fields())
        mlflow_run = client.create_run(experiment).info.run_id
        (record.dir / "mlflow.json").write_text(
            json.dumps({"tracking_uri": uri, "run_id": mlflow_run})
        )
        (record.dir / "out.txt").write_text(f"run {n}\n")
        record.finish_step("prep", "completed")
        record.end(None, 1.0)
        record.seal()
        push(open_archive(team), record.dir)
        notifier.emit(
            "nbmill.run.completed", lifecycle.subject(record), lifecycle.run_finished(record)
        )
        made.append(record)
    notifier.close()
    return made, uri


def test_an_untouched_archive_verifies_with_its_anchors(team, project, tmp_path):
    made, uri = tampered_setup(team, project, tmp_path)
    from mlflow.tracking import MlflowClient

    chain = archive_ledger(team)
    mlflow_run = json.loads((made[0].dir / "mlflow.json").read_text())["run_id"]
    anchor = MlflowClient(uri).get_run(mlflow_run).data.tags["nbmill.ledger.anchor"]
    assert anchor == f"{chain[0]['seq']}:{chain[0]['hash']}"  # the head after its final event
    checked = nbmill("archive", "verify", "--json", cwd=project)
    result = json.loads(checked.stdout)
    assert checked.returncode == 0 and result["ok"], result
    assert result["records"] == 3 and result["anchors"] == 3 and result["ledger_entries"] == 3


def test_a_record_file_altered_in_the_archive_is_named(team, project, tmp_path, azurite):
    made, _ = tampered_setup(team, project, tmp_path)
    manifest = json.loads(open_archive(team).read(f"{RECORDS}/{made[1].id}.json"))
    sha = manifest["files"]["out.txt"]
    blob(azurite, team, f"{OBJECTS}/{sha[:2]}/{sha}").upload_blob(b"run 9\n", overwrite=True)
    checked = nbmill("archive", "verify", cwd=project)
    assert checked.returncode == 4
    assert f"run {made[1].id}: out.txt was altered in the archive" in checked.stdout
    assert made[0].id not in checked.stdout and made[2].id not in checked.stdout


def rewrite_ledger(azurite: Azurite, team: str, entries: list[dict]) -> None:
    """The archive's ledger replaced whole (delete, create, append), as a writer with the
    account's key could."""
    client = blob(azurite, team, "ledger.jsonl")
    client.delete_blob()
    client.create_append_blob()
    client.append_block("".join(canonical(e) + "\n" for e in entries).encode())
    assert client.get_blob_properties().blob_type == BlobType.APPENDBLOB


def test_a_ledger_line_removed_is_named(team, project, tmp_path, azurite):
    tampered_setup(team, project, tmp_path)
    chain = archive_ledger(team)
    rewrite_ledger(azurite, team, [chain[0], chain[2]])
    checked = nbmill("archive", "verify", cwd=project)
    assert checked.returncode == 4
    assert "ledger:" in checked.stdout and "entry 2" in checked.stdout


def test_the_chain_rewritten_whole_with_valid_hashes_is_caught_by_its_anchors(
    team, project, tmp_path, azurite
):
    made, _ = tampered_setup(team, project, tmp_path)
    chain = archive_ledger(team)
    forged, last = [], None
    for entry in chain:  # the second run's final event edited, every hash recomputed
        event = dict(entry["event"])
        if entry["seq"] == 2:
            event["data"] = {**event["data"], "why": "edited afterwards"}
        last = next_entry(last, event)
        forged.append(last)
    rewrite_ledger(azurite, team, forged)
    assert len(ledger.verify(open_archive(team))) == 3  # the chain alone looks intact
    checked = nbmill("archive", "verify", cwd=project)
    assert checked.returncode == 4, checked.stdout
    assert "entry 2 is not the one anchored in MLflow run" in checked.stdout
    assert "entry 3 is not the one anchored" in checked.stdout
    given = nbmill("archive", "verify", "--anchor", f"nbmill-ledger-1-{chain[0]['hash'][:32]}",
                   "--json", cwd=project)  # fmt: skip
    assert json.loads(given.stdout)["anchors"] == 4


# -- settings -------------------------------------------------------------------------------


def test_wrong_credentials_are_named_and_the_local_record_is_intact(team, tmp_path, azurite):
    folder = agent(tmp_path / "wrong", team)
    wrong = azurite.connection_string.replace("AccountKey=Eby8", "AccountKey=Xby8")
    done = nbmill("run", "pipelines/tiny.yml", "--reason", "wrong key", cwd=folder,
                  env={CONNECTION: wrong})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "refused the credentials" in done.stderr and CONNECTION in done.stderr
    (run_dir,) = [f for f in (folder / "runs").iterdir() if (f / "run.json").is_file()]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"
    listed = nbmill("archive", "list", cwd=folder, env={CONNECTION: wrong})
    assert listed.returncode == 1
    assert "refused the credentials" in listed.stderr and CONNECTION in listed.stderr


def test_a_missing_container_or_account_is_named(team, tmp_path, monkeypatch):
    missing = team.replace("archive-", "missing-")
    with pytest.raises(ArchiveError, match=r"container 'missing-\w+' does not exist.*create it"):
        open_archive(missing).keys()
    monkeypatch.delenv(CONNECTION)
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_URL", raising=False)
    with pytest.raises(ArchiveError, match="AZURE_STORAGE_CONNECTION_STRING"):
        open_archive(team)


def test_an_unknown_archive_scheme_is_refused_by_name():
    with pytest.raises(ArchiveError, match="unknown scheme 's3://'"):
        open_archive("s3://bucket/prefix")


def test_archive_push_brings_a_projects_history_from_before_it_had_an_archive(project, tmp_path):
    notifier = Notifier(load_config(project))  # no archive yet: runs/ and its ledger only
    made = [sealed(project, notifier, n) for n in range(2)]
    notifier.close()
    url = str(tmp_path / "shared")
    pushed = nbmill("archive", "push", "--archive", url, "--json", cwd=project)
    assert pushed.returncode == 0, pushed.stderr
    assert json.loads(pushed.stdout)["events_appended"] == 2
    local = [json.loads(line)["event"]["id"]
             for line in (project / "runs" / "ledger.jsonl").read_text().splitlines()]  # fmt: skip
    assert [e["event"]["id"] for e in archive_ledger(url)] == local
    assert list(complete(open_archive(url))) == sorted(r.id for r in made)
    again = nbmill("archive", "push", "--archive", url, "--json", cwd=project)
    assert json.loads(again.stdout)["events_appended"] == 0  # nothing twice
    verified = nbmill("verify", "--archive", url, "--json", cwd=project)
    assert verified.returncode == 0 and json.loads(verified.stdout)["records"] == 2


def test_many_records_pushed_at_once_are_each_complete_and_share_their_objects(project, tmp_path):
    notifier = Notifier(load_config(project))
    made = [sealed(project, notifier, n) for n in range(22)]  # past archive push's MANY
    notifier.close()
    url = str(tmp_path / "shared")
    pushed = nbmill("archive", "push", "--archive", url, "--json", cwd=project)
    assert pushed.returncode == 0, pushed.stderr
    archive = open_archive(url)
    assert list(complete(archive)) == sorted(r.id for r in made)
    shas = {sha for r in made for sha in hash_path(r.dir, r.dir).values()}
    assert set(archive.keys(f"{OBJECTS}/")) == {f"{OBJECTS}/{s[:2]}/{s}" for s in shas}
    sent = [p["sent"] for p in json.loads(pushed.stdout)["pushed"]]
    assert sum(sent) == len(shas) < sum(len(hash_path(r.dir, r.dir)) for r in made)  # once each
