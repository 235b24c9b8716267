"""Faults, each with a real kernel and a real signal: time limits, dead kernels, retries,
SIGTERM and SIGINT, a SIGKILLed runner, resuming, and runs side by side."""

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

from tests.conftest import ROOT, load_run, nbmill, only_run, write_notebook

pytestmark = pytest.mark.slow


def pipeline(project: Path, steps: dict, name: str = "p") -> str:
    (project / "pipelines" / f"{name}.yml").write_text(
        yaml.safe_dump({"name": name, "steps": steps})
    )
    return f"pipelines/{name}.yml"


def notebook(project: Path, name: str, *cells: str, parameters: str = "x = 1") -> str:
    write_notebook(project / "notebooks" / f"{name}.ipynb", parameters, *cells)
    return f"notebooks/{name}.ipynb"


def wait_for(condition, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


def start(project: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "nbmill", *args],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# --- time limits, dead kernels, retries -----------------------------------------------------


def test_a_step_over_its_timeout_is_stopped_and_keeps_its_partial_notebook(project):
    path = notebook(project, "slow", "print('begun', flush=True)", "import time\ntime.sleep(120)")
    began = time.monotonic()
    done = nbmill("run", pipeline(project, {"slow": {"notebook": path, "timeout": 3}}), cwd=project)
    assert time.monotonic() - began < 60
    assert done.returncode == 1 and "ran longer than its timeout of 3 s" in done.stderr
    run_dir = only_run(project / "runs")
    step = load_run(run_dir)["steps"]["slow"]
    assert step["status"] == "timed_out" and step["error"]["timeout_s"] == 3
    executed = json.loads((run_dir / "notebooks" / "slow.ipynb").read_text())
    outputs = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    assert any("begun" in "".join(o.get("text", "")) for o in outputs)


@pytest.mark.parametrize(
    ("cell", "code", "words"),
    [
        ("import os\nos._exit(3)", 3, "the kernel exited with code 3"),
        (
            "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
            -9,
            "the kernel was killed by signal 9 (SIGKILL): out of memory?",
        ),
    ],
    ids=["exit", "sigkill"],
)
def test_a_dead_kernel_is_recorded_with_its_exit_code_or_signal(project, cell, code, words):
    path = notebook(project, "dies", cell)
    done = nbmill("run", pipeline(project, {"dies": {"notebook": path}}), cwd=project)
    assert done.returncode == 1 and words in done.stderr
    step = load_run(only_run(project / "runs"))["steps"]["dies"]
    assert step["status"] == "failed" and step["attempts"] == 1
    assert step["error"]["type"] == "DeadKernelError" and step["error"]["exit_code"] == code


def test_a_dead_kernel_is_retried_and_a_raising_cell_is_not(project):
    once = notebook(
        project,
        "once",
        "import os\nfrom pathlib import Path\nmarker = Path(run_dir) / 'tried'\n"
        "if not marker.exists():\n    marker.write_text('1')\n    os._exit(1)",
        parameters="run_dir = ''",
    )
    raises = notebook(project, "raises", "raise ValueError('bad data')")
    steps = {
        "once": {"notebook": once, "retries": 2},
        "raises": {"notebook": raises, "retries": 2, "needs": ["once"]},
    }
    done = nbmill("run", pipeline(project, steps), cwd=project)
    assert done.returncode == 1
    run = load_run(only_run(project / "runs"))
    assert run["steps"]["once"]["status"] == "completed" and run["steps"]["once"]["attempts"] == 2
    assert run["steps"]["raises"]["status"] == "failed" and run["steps"]["raises"]["attempts"] == 1
    assert run["steps"]["raises"]["error"]["type"] == "ValueError"


@pytest.mark.parametrize(("code", "status"), [(0, "completed"), (1, "failed")])
def test_sys_exit_0_is_a_success_and_sys_exit_1_a_failure(project, code, status):
    path = notebook(project, "exits", f"import sys\nsys.exit({code})", "x = 'never reached'")
    done = nbmill("run", pipeline(project, {"exits": {"notebook": path}}), cwd=project)
    assert done.returncode == (0 if code == 0 else 1), done.stderr
    assert load_run(only_run(project / "runs"))["steps"]["exits"]["status"] == status


# --- signals ----------------------------------------------------------------------------------


def sleeping_pipeline(project: Path) -> str:
    path = notebook(
        project,
        "sleeps",
        "from nbmill import tracking\nrun = tracking.mlflow_run()",
        "import os\nfrom pathlib import Path\n"
        "(Path(run_dir) / 'kernel.pid').write_text(str(os.getpid()))",
        "import time\ntime.sleep(300)",
        parameters="run_dir = ''",
    )
    return pipeline(project, {"sleeps": {"notebook": path}})


def running_kernel(project: Path) -> tuple[Path, int]:
    def found():
        for pid_file in (project / "runs").glob("*/kernel.pid"):
            if pid_file.read_text():
                return pid_file.parent, int(pid_file.read_text())
        return None

    return wait_for(found, 120, "the step's kernel to start")


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"]
)
def test_a_signal_stops_the_run_in_order(project, signum, code):
    from mlflow import MlflowClient

    runner = start(project, "run", sleeping_pipeline(project))
    run_dir, kernel = running_kernel(project)
    runner.send_signal(signum)
    _, stderr = runner.communicate(timeout=120)
    assert runner.returncode == code
    assert "Traceback" not in stderr and "Socket operation" not in stderr
    assert f"interrupted by {signal.Signals(signum).name}" in stderr.strip().splitlines()[-2]
    wait_for(lambda: not alive(kernel), 20, "the kernel to stop")
    run = load_run(run_dir)
    assert run["status"] == "interrupted" and run["steps"]["sleeps"]["status"] == "interrupted"
    assert (run_dir / "notebooks" / "sleeps.ipynb").is_file()  # the partial notebook
    last = [json.loads(line) for line in (project / "runs" / "ledger.jsonl").open()][-1]
    assert last["event"]["type"] == "nbmill.run.failed"
    assert last["event"]["data"]["status"] == "interrupted"
    info = json.loads((run_dir / "mlflow.json").read_text())
    assert MlflowClient(info["tracking_uri"]).get_run(info["run_id"]).info.status == "KILLED"
    assert nbmill("verify", cwd=project).returncode == 0


def test_a_killed_runner_takes_its_kernels_along_and_its_run_shows_as_abandoned(project):
    quick = notebook(project, "quick", "y = x + 1")
    assert (
        nbmill(
            "run", pipeline(project, {"quick": {"notebook": quick}}, "q"), cwd=project
        ).returncode
        == 0
    )
    runner = start(project, "run", sleeping_pipeline(project))
    run_dir, kernel = running_kernel(project)
    runner.kill()
    runner.wait(30)
    wait_for(lambda: not alive(kernel), 20, "the kernel to die with its runner")
    runs = json.loads(nbmill("runs", "--json", cwd=project).stdout)
    assert {r["id"]: r["status"] for r in runs}[run_dir.name] == "abandoned"
    verified = nbmill("verify", cwd=project)
    assert verified.returncode == 0, verified.stderr
    assert f"run {run_dir.name}: abandoned" in verified.stdout
    assert verified.stdout.count("files match") == 1  # the other run is still checked


# --- resume -----------------------------------------------------------------------------------


def resumable(project: Path) -> str:
    first = notebook(
        project,
        "first",
        "from pathlib import Path\ncount = Path('../executions.txt')\n"
        "count.write_text(count.read_text() + 'x' if count.exists() else 'x')\n"
        "Path(out).write_text('made by first')",
        parameters="out = ''",
    )
    second = notebook(
        project,
        "second",
        "from pathlib import Path\nassert Path('../fixed').exists(), 'not fixed yet'\n"
        "text = Path(inp).read_text()\nPath(out).write_text(text.upper() if shout else text)",
        parameters="inp = ''\nout = ''\nshout = True",
    )
    steps = {
        "first": {"notebook": first, "outputs": {"out": "first.txt"}, "cache": False},
        "second": {
            "notebook": second,
            "needs": ["first"],
            "inputs": {"inp": "first.txt"},
            "outputs": {"out": "second.txt"},
        },
    }
    return pipeline(project, steps)


def test_resume_continues_from_the_step_that_failed(project):
    spec = resumable(project)
    assert nbmill("run", spec, cwd=project).returncode == 1
    run_dir = only_run(project / "runs")
    (project / "fixed").write_text("")
    done = nbmill("run", spec, "--resume", run_dir.name, cwd=project)
    assert done.returncode == 0, done.stderr
    assert only_run(project / "runs") == run_dir  # the same run, continued
    run = load_run(run_dir)
    assert run["status"] == "completed" and len(run["resumed"]) == 1
    assert (project / "executions.txt").read_text() == "x"  # first did not run again
    assert (run_dir / "second.txt").read_text() == "MADE BY FIRST"
    assert nbmill("verify", cwd=project).returncode == 0


def test_resume_is_refused_when_code_or_params_changed_or_outputs_were_touched(project):
    spec = resumable(project)
    assert nbmill("run", spec, cwd=project).returncode == 1
    run_id = only_run(project / "runs").name
    (project / "fixed").write_text("")
    refused = nbmill("run", spec, "--resume", run_id, "-p", "second.shout=false", cwd=project)
    assert refused.returncode == 1 and "step 'second': its parameters differ" in refused.stderr
    original = (project / "notebooks" / "second.ipynb").read_text()
    notebook(project, "second", "print('changed')", parameters="inp = ''\nout = ''\nshout = True")
    refused = nbmill("run", spec, "--resume", run_id, cwd=project)
    assert refused.returncode == 1 and "its notebook's code changed" in refused.stderr
    (project / "notebooks" / "second.ipynb").write_text(original)
    (project / "runs" / run_id / "first.txt").write_text("edited")
    refused = nbmill("run", spec, "--resume", run_id, cwd=project)
    assert refused.returncode == 1 and "first.txt: sha256 differs" in refused.stderr


def test_resume_keeps_only_what_the_completed_steps_wrote(project):
    first = notebook(
        project,
        "first",
        "from pathlib import Path\nPath(run_dir, 'made.txt').write_text('made')\n"
        "Path(run_dir, 'notes').mkdir()\nPath(run_dir, 'notes', 'first.txt').write_text('kept')",
        parameters="run_dir = ''",
    )
    second = notebook(
        project,
        "second",
        "from pathlib import Path\nfixed = Path('../fixed').exists()\n"
        "Path(run_dir, 'half.csv').write_text('a,b\\n1,2\\n' if fixed else 'a,b\\n1,')\n"
        "if not fixed:\n"
        "    Path(run_dir, 'notes', 'second.txt').write_text('partial')\n"
        "    raise RuntimeError('not fixed yet')",
        parameters="run_dir = ''",
    )
    spec = pipeline(
        project,
        {
            "first": {"notebook": first, "outputs": ["made.txt"]},
            "second": {"notebook": second, "needs": ["first"], "outputs": ["half.csv"]},
        },
    )
    assert nbmill("run", spec, cwd=project).returncode == 1
    run_dir = only_run(project / "runs")
    assert (run_dir / "notes" / "second.txt").exists() and (run_dir / "half.csv").exists()
    failed = load_run(run_dir)["steps"]["second"]
    assert failed["undeclared"].keys() == {"notes/second.txt"}
    (project / "fixed").write_text("")
    done = nbmill("run", spec, "--resume", run_dir.name, cwd=project)
    assert done.returncode == 0, done.stderr
    assert not (run_dir / "notes" / "second.txt").exists()  # the failed attempt's leftovers
    assert (run_dir / "notes" / "first.txt").read_text() == "kept"  # first wrote it, undeclared
    assert (run_dir / "made.txt").read_text() == "made"
    assert (run_dir / "half.csv").read_text() == "a,b\n1,2\n"
    run = load_run(run_dir)
    assert run["steps"]["first"]["undeclared"].keys() == {"notes/first.txt"}
    assert "notes/second.txt" not in run["files"]
    assert nbmill("verify", cwd=project).returncode == 0


# --- runs side by side ------------------------------------------------------------------------


def test_two_runs_at_once_both_complete_with_one_intact_ledger(project):
    path = notebook(project, "work", "import time\ntime.sleep(1)\ny = x + 1")
    spec = pipeline(project, {"a": {"notebook": path}, "b": {"notebook": path, "needs": ["a"]}})
    runners = [start(project, "run", spec, "--force-all") for _ in range(2)]
    for runner in runners:
        _, stderr = runner.communicate(timeout=300)
        assert runner.returncode == 0, stderr
    runs = [p for p in (project / "runs").iterdir() if (p / "run.json").exists()]
    assert len({p.name for p in runs}) == 2
    verified = nbmill("verify", cwd=project)
    assert verified.returncode == 0 and verified.stdout.count("files match") == 2


def test_a_lock_left_by_a_killed_process_does_not_block_the_ledger(tmp_path):
    from nbmill.governance.ledger import Ledger

    path = tmp_path / "ledger.jsonl"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom filelock import FileLock\n"
            f"lock = FileLock({str(path) + '.lock'!r})\nlock.acquire()\n"
            "print('held', flush=True)\ntime.sleep(300)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait(10)
    began = time.monotonic()
    Ledger(path).append({"type": "nbmill.run.started", "data": {}})
    assert time.monotonic() - began < 5
    assert len(list(Ledger(path).entries())) == 1


# --- notebooks as papermill runs them ---------------------------------------------------------


def test_a_notebook_without_a_parameters_cell_runs_when_nothing_is_passed(project):
    path = notebook(project, "plain", "y = 41 + 1\nprint(y)", parameters=None)
    done = nbmill("run", pipeline(project, {"plain": {"notebook": path}}), cwd=project)
    assert done.returncode == 0, done.stderr
    assert load_run(only_run(project / "runs"))["steps"]["plain"]["status"] == "completed"
    refused = nbmill("run", "pipelines/p.yml", "-p", "plain.y=1", cwd=project)
    assert refused.returncode == 1
    assert "cannot set 'y': plain.ipynb has no cell tagged 'parameters'" in refused.stderr
