"""Reviewing runs: listing, finding, tabulating and comparing real run folders, and the site."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from nbmill.errors import NbmillError
from nbmill.records.report import ledger_html, site_html, write_site
from nbmill.records.review import diff_runs, find_run, list_runs, runs_table
from nbmill.records.text import format_diff, format_run, format_table

OLD = "20261129T021206971Z-fb1dc8"
MID = "20261129T031500002Z-0a11ce"
NEW = "20261130T090000123Z-c0ffee"
XSS = "<script>document.body.dataset.pwned='yes'</script>"


def sha(char: str) -> str:
    return char * 64


def make_run(
    runs_dir: Path,
    run_id: str,
    *,
    status: str = "completed",
    why: str = "baseline",
    alpha: float = 1.0,
    r2: float = 0.4541,
    train_csv: str = sha("1"),
    fingerprint: str = sha("e"),
    commit: str = "1bcd6f2a42a1" + "0" * 28,
) -> dict:
    """Write runs_dir/<run_id>/run.json shaped like the runner's, and return it."""
    started = f"{run_id[:4]}-{run_id[4:6]}-{run_id[6:8]}T{run_id[9:11]}:{run_id[11:13]}:00.000Z"
    model = {"model/model.skops": sha("m" if alpha == 1.0 else "n")}

    def step(name: str, params: dict, inputs: dict, outputs: dict, metrics: dict) -> dict:
        failed = status == "failed" and name == "evaluate"
        return {
            "status": "failed" if failed else "completed",
            "notebook": f"notebooks/{name}.ipynb",
            "params": params,
            "started_at": started,
            "ended_at": started,
            "duration_s": 6.4,
            "inputs": inputs,
            "outputs": outputs,
            "metrics": {} if failed else metrics,
            "executed": f"notebooks/{name}.ipynb",
            "html": f"html/{name}.html",
            "error": {"type": "ValueError", "message": "bad input", "cell": 3} if failed else None,
        }

    steps = {
        "prep": step(
            "prep",
            {"seed": 42, "test_size": 0.2},
            {},
            {"data/train.csv": train_csv, "data/test.csv": sha("2")},
            {"rows_train": 353.0},
        ),
        "train": step(
            "train", {"alpha": alpha}, {"data/train.csv": train_csv}, model, {"train_r2": 0.5276}
        ),
        "evaluate": step(
            "evaluate",
            {},
            {"data/test.csv": sha("2"), **model},
            {"eval/predictions.csv": sha("p")},
            {"test_r2": r2, "test_rmse": 53.78},
        ),
    }
    metrics = {
        f"{name}.{key}": value for name, s in steps.items() for key, value in s["metrics"].items()
    }
    run = {
        "schema": 1,
        "id": run_id,
        "status": status,
        "pipeline": {"name": "training", "file": "pipelines/training.yml", "sha256": sha("9")},
        "params_file": {"file": "params/dev.yml", "sha256": sha("7")},
        "started_at": started,
        "ended_at": started,
        "duration_s": 25.4,
        "who": "Ada Lovelace <ada@example.com>",
        "why": why,
        "git": {"commit": commit, "dirty": False, "branch": "main"},
        "host": "vm",
        "python": "3.11.7",
        "platform": "Linux",
        "ci": {},
        "steps": steps,
        "metrics": metrics,
        "error": (
            {"step": "evaluate", "type": "ValueError", "message": "bad input", "cell": 3}
            if status == "failed"
            else None
        ),
        "environment": {
            "fingerprint": fingerprint,
            "distributions": 140,
            "file": "environment.txt",
            "executable": "/venv/bin/python",
        },
        "files": {"data/train.csv": train_csv, "data/test.csv": sha("2")},
    }
    folder = runs_dir / run_id
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps(run, indent=2))
    return run


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    """Three runs (the middle one failed), plus scratch and a folder without a record."""
    runs = tmp_path / "runs"
    make_run(runs, OLD)
    make_run(runs, MID, status="failed", why="try a smaller alpha", alpha=0.3)
    make_run(runs, NEW, why=XSS, r2=0.5012, train_csv=sha("3"))
    (runs / "scratch" / "data").mkdir(parents=True)
    (runs / "scratch" / "run.json").write_text("{}")
    (runs / "20261201T000000000Z-notrun").mkdir()
    (runs / "ledger.jsonl").write_text("")
    return runs


def ids(runs: list[dict]) -> list[str]:
    return [run["id"] for run in runs]


# -- list_runs and find_run ---------------------------------------------------------------------


def test_list_runs_is_newest_first_and_skips_scratch_and_folders_without_a_record(runs_dir):
    assert ids(list_runs(runs_dir)) == [NEW, MID, OLD]


def test_list_runs_of_a_missing_folder_is_empty(tmp_path):
    assert list_runs(tmp_path / "nowhere") == []


def test_list_runs_names_a_run_json_that_is_not_json(runs_dir):
    (runs_dir / MID / "run.json").write_text('{"id": "trunc')
    with pytest.raises(NbmillError, match=re.escape(str(runs_dir / MID / "run.json"))):
        list_runs(runs_dir)


def test_find_run_by_full_id_unique_prefix_latest_and_folder(runs_dir):
    assert find_run(runs_dir, MID)["id"] == MID
    assert find_run(runs_dir, "20261130")["id"] == NEW
    assert find_run(runs_dir, "latest")["id"] == NEW
    assert find_run(runs_dir, str(runs_dir / OLD))["id"] == OLD
    assert find_run(runs_dir, str(runs_dir / OLD / "run.json"))["id"] == OLD


def test_an_ambiguous_prefix_lists_at_most_five_candidates(tmp_path):
    made = [make_run(tmp_path, f"20261129T02120{n}000Z-00000{n}")["id"] for n in range(7)]
    with pytest.raises(NbmillError) as caught:
        find_run(tmp_path, "20261129")
    message = str(caught.value)
    assert "'20261129' matches 7 runs" in message and "give more of the id" in message
    assert "and 2 more" in message
    assert sum(run_id in message for run_id in made) == 5
    assert made[-1] in message  # newest first


def test_an_unknown_ref_says_what_to_give_and_lists_the_newest_runs(runs_dir):
    with pytest.raises(NbmillError) as caught:
        find_run(runs_dir, "2025")
    message = str(caught.value)
    assert "no run '2025'" in message
    assert "a unique prefix" in message and "'latest'" in message
    assert NEW in message and OLD in message


def test_latest_in_an_empty_runs_folder_says_how_to_make_a_run(tmp_path):
    with pytest.raises(NbmillError, match="no runs in .* yet; start one with `nbmill run`"):
        find_run(tmp_path, "latest")


# -- runs_table and format_table ----------------------------------------------------------------


def test_runs_table_shows_provenance_and_the_first_three_metrics(runs_dir):
    rows = runs_table(list_runs(runs_dir))
    assert list(rows[0]) == [
        "id",
        "when",
        "who",
        "why",
        "status",
        "prep.rows_train",
        "train.train_r2",
        "evaluate.test_r2",
    ]
    assert (
        rows[0]["id"] == NEW and rows[0]["why"] == XSS and rows[0]["when"].startswith("2026-11-30")
    )
    assert rows[0]["evaluate.test_r2"] == 0.5012
    assert rows[1]["status"] == "failed" and rows[1]["evaluate.test_r2"] is None


def test_runs_table_takes_the_configured_key_metrics(runs_dir):
    rows = runs_table(list_runs(runs_dir), ["evaluate.test_rmse", "no.such"])
    assert [list(row)[5:] for row in rows] == [["evaluate.test_rmse", "no.such"]] * 3
    assert rows[2]["evaluate.test_rmse"] == 53.78 and rows[2]["no.such"] is None


def test_format_table_aligns_columns_rounds_floats_and_leaves_missing_values_blank():
    rows = [
        {"id": "a", "why": "first", "r2": 0.454146520, "n": 353},
        {"id": "bbbbbb", "why": None, "r2": 12.5, "n": 7},
    ]
    lines = format_table(rows).splitlines()
    assert lines[0].split() == ["id", "why", "r2", "n"]
    assert set(lines[1]) == {"-", " "}
    assert lines[2].split() == ["a", "first", "0.4541", "353"]
    assert lines[3].split() == ["bbbbbb", "12.5", "7"]
    # text starts where its header starts; numbers end where theirs ends
    assert lines[2].index("first") == lines[0].index("why")
    assert lines[2].index("0.4541") + 6 == lines[3].index("12.5") + 4 == lines[0].index("r2") + 2
    assert lines[2].endswith("353") and lines[3].endswith("  7")
    assert len({len(line) for line in lines[:3]}) == 1  # full rows share one width


def test_format_table_keeps_a_long_or_multi_line_why_on_one_short_line():
    text = format_table([{"why": "line one\nline two " + "x" * 100}])
    assert len(text.splitlines()) == 3 and text.splitlines()[2].startswith("line one line two")
    assert text.splitlines()[2].endswith("…") and len(text.splitlines()[2]) == 60


# -- diff_runs ----------------------------------------------------------------------------------


def test_diff_names_the_changed_param_metric_and_data_hash(runs_dir):
    old, new = find_run(runs_dir, OLD), find_run(runs_dir, NEW)
    new["steps"]["train"]["params"]["alpha"] = 0.3
    diff = diff_runs(old, new)
    assert diff["params"] == {"train": {"alpha": [1.0, 0.3]}}
    assert diff["metrics"]["evaluate.test_r2"]["a"] == 0.4541
    assert diff["metrics"]["evaluate.test_r2"]["b"] == 0.5012
    assert diff["metrics"]["evaluate.test_r2"]["delta"] == pytest.approx(0.0471)
    assert list(diff["metrics"]) == ["evaluate.test_r2"]
    assert diff["data"] == {"data/train.csv": [sha("1"), sha("3")]}
    assert diff["environment"] == {"a": sha("e"), "b": sha("e"), "same": True}
    assert diff["commit"]["same"] and diff["commit"]["dirty_a"] is False
    assert diff["pipeline"]["same"]
    text = format_diff(diff)
    assert "train.alpha" in text and "1.0" in text and "0.3" in text
    assert "evaluate.test_r2" in text and "+0.0471" in text
    assert f"data/train.csv  {sha('1')[:12]}  {sha('3')[:12]}" in text
    assert "environment  same" in text


def test_diff_shows_added_and_removed_params_files_and_metrics(runs_dir):
    old, failed = find_run(runs_dir, OLD), find_run(runs_dir, MID)
    failed["steps"]["prep"]["params"]["stratify"] = True
    del failed["steps"]["prep"]["params"]["seed"]
    failed["steps"]["evaluate"]["outputs"] = {}
    failed["environment"]["fingerprint"] = sha("f")
    diff = diff_runs(old, failed)
    assert diff["params"]["prep"] == {"seed": [42, None], "stratify": [None, True]}
    assert diff["params"]["train"] == {"alpha": [1.0, 0.3]}
    assert diff["metrics"]["evaluate.test_rmse"] == {"a": 53.78, "b": None, "delta": None}
    assert diff["data"]["eval/predictions.csv"] == [sha("p"), None]
    assert diff["data"]["model/model.skops"] == [sha("m"), sha("n")]
    assert diff["environment"]["same"] is False
    text = format_diff(diff)
    assert "(absent)" in text and "environment  differs" in text


def test_a_run_compared_with_itself_has_no_changes(runs_dir):
    run = find_run(runs_dir, OLD)
    diff = diff_runs(run, json.loads(json.dumps(run)))
    assert diff["params"] == {} and diff["metrics"] == {} and diff["data"] == {}
    assert diff["environment"]["same"] and diff["commit"]["same"] and diff["pipeline"]["same"]
    assert format_diff(diff).count("no changes") == 3


def test_format_run_tells_a_reviewer_who_why_what_and_how_it_ended(runs_dir):
    text = format_run(find_run(runs_dir, MID))
    assert text.splitlines()[0] == f"run {MID}"
    for expected in (
        "failed",
        "Ada Lovelace <ada@example.com>",
        "try a smaller alpha",
        "params/dev.yml",
        "1bcd6f2a42a1 on main",
        "evaluate: ValueError: bad input (cell 3)",
        "alpha=0.3",
        "train.train_r2",
    ):
        assert expected in text, expected


# -- the site -----------------------------------------------------------------------------------


def ledger_entry(seq: int, run_id: str, kind: str, who: str) -> dict:
    return {
        "seq": seq,
        "prev": f"{seq - 1:064x}",
        "hash": f"{seq:02x}" * 32,
        "event": {
            "specversion": "1.0",
            "id": f"evt-{seq}",
            "source": "nbmill",
            "type": f"nbmill.run.{kind}",
            "time": "2026-11-29T02:12:06.971Z",
            "subject": f"runs/{run_id}",
            "datacontenttype": "application/json",
            "data": {"who": who, "why": "x", "run_id": run_id},
        },
    }


def test_site_html_escapes_user_text_and_links_every_run_and_step(runs_dir):
    page = site_html(list_runs(runs_dir))
    assert "<script>" not in page and "&lt;script&gt;" in page
    for run_id in (OLD, MID, NEW):
        assert f'href="{run_id}/index.html"' in page
        for step in ("prep", "train", "evaluate"):
            assert f'href="{run_id}/html/{step}.html"' in page
    assert "href='ledger.html'" in page
    assert '<span class="failed">failed</span>' in page
    assert "0.5012" in page and "try a smaller alpha" in page
    assert "http" not in page  # nothing fetched from the network


def test_ledger_html_escapes_and_links_subjects_of_known_runs():
    entries = [
        ledger_entry(1, OLD, "started", "ada"),
        ledger_entry(2, OLD, "completed", "<img src=x onerror=alert(1)>"),
        ledger_entry(3, "20991231T000000000Z-gone00", "failed", "bob"),
        ledger_entry(4, XSS, "<script>", XSS),
    ]
    page = ledger_html(entries, {OLD})
    assert "<img" not in page and "&lt;img src=x" in page
    assert "<script>" not in page and page.count("&lt;script&gt;") == 3
    assert page.count(f'href="{OLD}/index.html"') == 2
    assert "runs/20991231T000000000Z-gone00" in page and 'href="20991231' not in page
    assert "nbmill.run.completed" in page and f'title="{"02" * 32}"' in page
    assert ">" + "03" * 6 + "<" in page  # the short hash
    assert "href='index.html'" in page


def test_write_site_leaves_the_index_and_the_ledger_and_nothing_else(runs_dir):
    before = set(runs_dir.iterdir())
    index = write_site(runs_dir, list_runs(runs_dir), [ledger_entry(1, NEW, "completed", "ada")])
    assert index == runs_dir / "index.html"
    assert set(runs_dir.iterdir()) - before == {runs_dir / "index.html", runs_dir / "ledger.html"}
    assert NEW in index.read_text() and "&lt;script&gt;" in index.read_text()
    assert f'href="{NEW}/index.html"' in (runs_dir / "ledger.html").read_text()
