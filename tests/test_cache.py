"""Incremental runs: a step comes from the cache only when its code, params, inputs, project
modules and environment are those of an earlier execution whose outputs are intact."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
import yaml

from nbmill.pipeline import cache
from tests.conftest import load_run, nbmill, write_notebook

pytestmark = pytest.mark.slow


@pytest.fixture
def chain(project: Path) -> Path:
    """make -> use: `make` writes a number from a helper module beside the notebooks."""
    (project / "notebooks" / "helpers.py").write_text("def value(n):\n    return n * 10\n")
    write_notebook(
        project / "notebooks" / "make.ipynb",
        "n = 1\nout = ''",
        "import helpers\nfrom pathlib import Path\nPath(out).write_text(str(helpers.value(n)))",
    )
    write_notebook(
        project / "notebooks" / "use.ipynb",
        "inp = ''\nout = ''",
        "from pathlib import Path\nPath(out).write_text(Path(inp).read_text() + '!')",
    )
    spec = {
        "name": "chain",
        "steps": {
            "make": {"notebook": "notebooks/make.ipynb", "outputs": {"out": "made.txt"}},
            "use": {
                "notebook": "notebooks/use.ipynb",
                "needs": ["make"],
                "inputs": {"inp": "made.txt"},
                "outputs": {"out": "used.txt"},
            },
        },
    }
    (project / "pipelines" / "chain.yml").write_text(yaml.safe_dump(spec))
    return project


def run(project: Path, *args: str, pipeline: str = "chain") -> dict:
    """Run ``pipelines/<pipeline>.yml`` through the real command; the newest run's record."""
    done = nbmill("run", f"pipelines/{pipeline}.yml", *args, cwd=project)
    assert done.returncode == 0, done.stderr
    newest = sorted(p for p in (project / "runs").iterdir() if (p / "run.json").exists())[-1]
    return load_run(newest)


def statuses(run: dict) -> dict[str, str]:
    return {name: step["status"] for name, step in run["steps"].items()}


def edit_cell(path: Path, index: int, source: str) -> None:
    nb = nbformat.read(path, as_version=4)
    nb.cells[index].source = source
    nbformat.write(nb, path)


def test_a_rerun_with_nothing_changed_takes_every_step_from_the_cache(chain):
    first = run(chain)
    second = run(chain)
    assert statuses(first) == {"make": "completed", "use": "completed"}
    assert statuses(second) == {"make": "cached", "use": "cached"}
    step = second["steps"]["use"]
    assert step["cached_from"]["run_id"] == first["id"]
    assert step["cached_from"]["notebook"] == f"{first['id']}/notebooks/use.ipynb"
    assert step["outputs"] == first["steps"]["use"]["outputs"]
    assert (chain / "runs" / second["id"] / "used.txt").read_text() == "10!"
    verified = nbmill("verify", cwd=chain)
    assert verified.returncode == 0 and verified.stdout.count("files match") == 2


def test_editing_markdown_only_is_still_a_hit(chain):
    run(chain)
    edit_cell(chain / "notebooks" / "make.ipynb", 0, "# make, now with a better title")
    assert statuses(run(chain)) == {"make": "cached", "use": "cached"}


def test_editing_a_code_cell_reruns_the_step(chain):
    run(chain)
    edit_cell(
        chain / "notebooks" / "use.ipynb",
        2,
        "from pathlib import Path\nPath(out).write_text(Path(inp).read_text() + '?')",
    )
    assert statuses(run(chain)) == {"make": "cached", "use": "completed"}


def test_a_changed_param_reruns_the_step_and_a_changed_input_its_dependants(chain):
    run(chain)
    assert statuses(run(chain, "-p", "make.n=2")) == {"make": "completed", "use": "completed"}


def test_an_upstream_rerun_with_the_same_output_keeps_the_dependant_cached(chain):
    run(chain)
    edit_cell(
        chain / "notebooks" / "make.ipynb",
        2,
        "import helpers\nfrom pathlib import Path\nvalue = helpers.value(n)\n"
        "Path(out).write_text(str(value))",
    )
    assert statuses(run(chain)) == {"make": "completed", "use": "cached"}


def test_a_changed_project_module_reruns_the_steps_that_import_it(chain):
    run(chain)
    (chain / "notebooks" / "helpers.py").write_text("def value(n):\n    return n * 100\n")
    second = run(chain)
    assert statuses(second) == {"make": "completed", "use": "completed"}
    assert (chain / "runs" / second["id"] / "used.txt").read_text() == "100!"


def test_force_reruns_the_named_steps_and_cache_false_always_runs(chain):
    run(chain)
    assert statuses(run(chain, "--force", "use")) == {"make": "cached", "use": "completed"}
    assert statuses(run(chain, "--force-all")) == {"make": "completed", "use": "completed"}
    spec = yaml.safe_load((chain / "pipelines" / "chain.yml").read_text())
    spec["steps"]["make"]["cache"] = False
    (chain / "pipelines" / "chain.yml").write_text(yaml.safe_dump(spec))
    assert statuses(run(chain))["make"] == "completed"


def test_an_output_changed_after_the_run_is_not_reused(chain):
    first = run(chain)
    (chain / "runs" / first["id"] / "made.txt").write_text("tampered")
    assert statuses(run(chain))["make"] == "completed"


def test_explain_names_each_step_s_key_parts_and_why_it_hits_or_misses(chain):
    first = nbmill("run", "pipelines/chain.yml", "--explain", cwd=chain)
    assert first.returncode == 0 and not (chain / "runs").exists()  # nothing ran
    assert "make: miss: not executed before" in first.stdout
    assert "use: miss: step 'make' before it executes" in first.stdout
    run(chain)
    hit = nbmill("run", "pipelines/chain.yml", "--explain", cwd=chain).stdout
    assert "make: hit: same key as run" in hit and "use: hit: same key as run" in hit
    assert "  code " in hit and "  modules " in hit and "helpers" in hit
    changed = nbmill("run", "pipelines/chain.yml", "--explain", "-p", "make.n=3", cwd=chain)
    assert "make: miss: changed since the last cached execution: params (n)" in changed.stdout


def test_the_key_changes_with_the_environment_fingerprint_and_each_other_part():
    parts = {
        "code": "c",
        "params": {"n": 1},
        "inputs": {"a.txt": "1" * 64},
        "environment": "e" * 64,
        "modules": {"helpers": "h"},
    }
    base = cache.key_of(parts)
    for part, other in [
        ("environment", "f" * 64),
        ("code", "d"),
        ("params", {"n": 2}),
        ("inputs", {"a.txt": "2" * 64}),
        ("modules", {"helpers": "i"}),
    ]:
        changed = {**parts, part: other}
        assert cache.key_of(changed) != base, part
        assert cache.changed(parts, changed)[0].startswith(part)
    assert cache.key_of(json.loads(json.dumps(parts))) == base


def test_the_report_of_a_cached_step_links_the_run_that_executed_it(chain):
    first = run(chain)
    second = run(chain)
    page = (chain / "runs" / second["id"] / "index.html").read_text()
    assert f'href="../{first["id"]}/html/use.html"' in page
    assert f'href="../{first["id"]}/index.html"' in page
    assert (chain / "runs" / first["id"] / "html" / "use.html").is_file()


# --- Steps that write under run_dir without declaring what (a common papermill pattern) ------

INGEST = (
    "from pathlib import Path\n"
    "data = Path(run_dir) / 'data'\ndata.mkdir(exist_ok=True)\n"
    "(data / 'train.csv').write_text(f'x\\n{n}\\n{n + 1}\\n')\n"
    "(data / 'test.csv').write_text(f'x\\n{n + 2}\\n')"
)
FIT = (
    "import json\nfrom pathlib import Path\n"
    "rows = (Path(run_dir) / 'data' / 'train.csv').read_text().split()[1:]\n"
    "model = Path(run_dir) / 'model'\nmodel.mkdir(exist_ok=True)\n"
    "(model / 'model.json').write_text(json.dumps({'mean': sum(map(int, rows)) / len(rows)}))"
)
ASSESS = (
    "import json\nfrom pathlib import Path\n"
    "test = (Path(run_dir) / 'data' / 'test.csv').read_text().split()[1:]\n"
    "mean = json.loads((Path(run_dir) / 'model' / 'model.json').read_text())['mean']\n"
    "auc = 1 / (1 + abs(int(test[0]) - mean))\n"
    "report = Path(run_dir) / 'report'\nreport.mkdir(exist_ok=True)\n"
    "(report / 'score.txt').write_text(f'{auc:.3f} >= {min_auc}')"
)


def papermill_project(project: Path, outputs: dict[str, list[str]] | None = None) -> Path:
    """ingest -> fit -> assess: notebooks that take run_dir and build their own paths."""
    write_notebook(project / "notebooks" / "ingest.ipynb", "run_dir = ''\nn = 1", INGEST)
    write_notebook(project / "notebooks" / "fit.ipynb", "run_dir = ''", FIT)
    write_notebook(project / "notebooks" / "assess.ipynb", "run_dir = ''\nmin_auc = 0.5", ASSESS)
    steps = {
        "ingest": {"notebook": "notebooks/ingest.ipynb"},
        "fit": {"notebook": "notebooks/fit.ipynb", "needs": ["ingest"]},
        "assess": {"notebook": "notebooks/assess.ipynb", "needs": ["fit"]},
    }
    for name, paths in (outputs or {}).items():
        steps[name]["outputs"] = paths
    spec = {"name": "pm", "steps": steps}
    (project / "pipelines" / "pm.yml").write_text(yaml.safe_dump(spec))
    return project


def run_pm(project: Path, *args: str) -> dict:
    return run(project, *args, pipeline="pm")


def written(project: Path, run: dict) -> dict[str, str]:
    """sha256 of the files the steps wrote (not nbmill's own record files)."""
    from nbmill._hashing import hash_tree
    from nbmill.records.runjson import is_record_file

    files = hash_tree(project / "runs" / run["id"])
    return {rel: digest for rel, digest in files.items() if not is_record_file(rel)}


STEP_FILES = {"data/test.csv", "data/train.csv", "model/model.json", "report/score.txt"}


def test_steps_that_write_undeclared_files_execute_again_and_every_record_is_complete(project):
    papermill_project(project)
    first = run_pm(project)
    assert first["steps"]["ingest"]["undeclared"].keys() == {"data/train.csv", "data/test.csv"}
    explained = nbmill("run", "pipelines/pm.yml", "--explain", cwd=project).stdout
    assert (
        f"ingest: miss: when it executed in run {first['id']} it wrote files its outputs do "
        "not declare (data/test.csv, data/train.csv)" in explained
    )
    assert "declare them as outputs" in explained
    second = run_pm(project)
    assert statuses(second) == {"ingest": "completed", "fit": "completed", "assess": "completed"}
    assert written(project, second) == written(project, first)
    assert set(written(project, second)) == STEP_FILES
    changed = run_pm(project, "-p", "assess.min_auc=0.95")
    assert statuses(changed) == statuses(second)
    assert (project / "runs" / changed["id"] / "report" / "score.txt").read_text().endswith("0.95")
    verified = nbmill("verify", cwd=project)
    assert verified.returncode == 0 and verified.stdout.count("files match") == 3


def test_outputs_declared_as_bare_paths_make_run_dir_notebooks_cacheable(project):
    papermill_project(
        project,
        {"ingest": ["data/train.csv", "data/test.csv"], "fit": ["model"], "assess": ["report"]},
    )
    first = run_pm(project)
    assert all(step["undeclared"] == {} for step in first["steps"].values())
    second = run_pm(project)
    assert statuses(second) == {"ingest": "cached", "fit": "cached", "assess": "cached"}
    assert written(project, second) == written(project, first)
    assert set(written(project, second)) == STEP_FILES
    changed = run_pm(project, "-p", "assess.min_auc=0.95")
    assert statuses(changed) == {"ingest": "cached", "fit": "cached", "assess": "completed"}
    assert (project / "runs" / changed["id"] / "report" / "score.txt").read_text().endswith("0.95")
    verified = nbmill("verify", cwd=project)
    assert verified.returncode == 0 and verified.stdout.count("files match") == 3


def test_a_step_that_declares_no_inputs_is_keyed_on_everything_before_it_wrote(project):
    papermill_project(
        project,
        {"ingest": ["data/train.csv", "data/test.csv"], "fit": ["model"], "assess": ["report"]},
    )
    run_pm(project)
    changed = run_pm(project, "-p", "ingest.n=5")
    assert statuses(changed) == {"ingest": "completed", "fit": "completed", "assess": "completed"}
    model = json.loads((project / "runs" / changed["id"] / "model" / "model.json").read_text())
    assert model == {"mean": 5.5}


def test_a_step_that_writes_more_than_it_declares_is_not_cached(project):
    papermill_project(
        project, {"ingest": ["data/train.csv"], "fit": ["model"], "assess": ["report"]}
    )
    first = run_pm(project)
    assert first["steps"]["ingest"]["undeclared"].keys() == {"data/test.csv"}
    second = run_pm(project)
    assert statuses(second) == {"ingest": "completed", "fit": "cached", "assess": "cached"}
    assert set(written(project, second)) == STEP_FILES


def test_outputs_as_a_mapping_or_a_list_of_paths_and_nothing_else(project):
    from nbmill.errors import SpecError
    from nbmill.project.spec import load_pipeline

    papermill_project(project, {"ingest": ["data/train.csv", "data"]})
    steps = load_pipeline(project / "pipelines" / "pm.yml", project).steps
    assert steps["ingest"].outputs.paths == ("data/train.csv", "data")
    assert steps["ingest"].outputs.params == {}
    papermill_project(project, {"ingest": "data/train.csv"})
    with pytest.raises(SpecError, match="'outputs' must be a mapping .* or a list of paths"):
        load_pipeline(project / "pipelines" / "pm.yml", project)
    papermill_project(project, {"ingest": ["../up.csv"]})
    with pytest.raises(SpecError, match=r"'outputs'\[0\]: '../up.csv' must be a relative path"):
        load_pipeline(project / "pipelines" / "pm.yml", project)


def test_a_damaged_cache_entry_is_a_miss_with_a_warning_naming_it(chain):
    first = run(chain)
    entry = chain / "runs" / ".cache" / "chain" / "make" / f"{first['steps']['make']['key']}.json"
    entry.write_text("{not json")
    done = nbmill("run", "pipelines/chain.yml", cwd=chain)
    assert done.returncode == 0, done.stderr
    assert f"warning: {entry}: unreadable cache entry" in done.stderr
    assert "Traceback" not in done.stderr
    newest = sorted(p for p in (chain / "runs").iterdir() if (p / "run.json").exists())[-1]
    assert statuses(load_run(newest)) == {"make": "completed", "use": "cached"}
    assert json.loads(entry.read_text())["run_id"] == newest.name  # replaced by the new one
