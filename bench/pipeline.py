"""Pipelines, side by side with their peers: median wall time of several runs.

    .venv/bin/python bench/pipeline.py [--repeat 3] [--scenarios default,tiny,rerun,diamond]

- default: the training pipeline five ways.
  - nbmill run            the real command: fork-server kernels, record, hashes, HTML, with
                          what each step imported on first use learned by the runs before
  - nbmill run, first on the machine   the same with an empty user cache: nothing learned
  - nbmill run --no-warm  the same, each kernel started the plain way when its step begins
  - papermill CLI x4      the same notebooks, one `papermill` call per step, in order
  - plain script          the same code in one Python process (no notebooks, no record)
  Every timed run gets a new MLflow store and runs folder (made before its timer starts), so
  each registers the first version of its model, which the gate promotes and the deploy step
  smoke-tests over HTTP: all of them do the same work, and nbmill's cache is empty.
- tiny: four chained notebooks that import scikit-learn and pandas: nbmill run (empty cache),
  papermill CLI x4, and `ploomber build --force` (Ploomber 0.23, in its own virtual environment,
  .bench-venvs/ploomber, made on first use).
- rerun: the tiny pipeline again with nothing changed: nbmill run, and `ploomber build`.
- diamond: two middle steps that each sleep 5 s, with --jobs 2, against the longer branch alone.

Child processes run with Python's bytecode cache on, as `make` runs them; `--no-bytecode` makes
every one of them compile every module from source instead. Figures, not asserts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import projects

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def nbmill(out: Path, *extra: str) -> list[str]:
    return [
        str(BIN / "nbmill"),
        "run",
        "pipelines/training.yml",
        "--params",
        "params/dev.yml",
        "--reason",
        "benchmark",
        "--runs-dir",
        str(out),
        *extra,
    ]


def papermill_steps(out: Path) -> list[list[str]]:
    data, model = out / "data", out / "model"
    out.mkdir(parents=True, exist_ok=True)  # papermill writes into an existing folder only
    steps = [
        (
            "prep",
            {
                "seed": 42,
                "test_size": 0.2,
                "train_data": data / "train.csv",
                "test_data": data / "test.csv",
            },
        ),
        ("train", {"alpha": 1.0, "train_data": data / "train.csv", "model_dir": model}),
        (
            "evaluate",
            {"test_data": data / "test.csv", "model_dir": model, "eval_dir": out / "eval"},
        ),
        (
            "deploy",
            {
                "target": "local",
                "model_dir": model,
                "test_data": data / "test.csv",
                "package_dir": out / "package",
            },
        ),
    ]
    return [papermill_command(name, out, params) for name, params in steps]


def papermill_command(name: str, out: Path, params: dict) -> list[str]:
    """One `papermill` call: notebooks/NAME.ipynb into OUT/NAME.ipynb with these parameters."""
    command = [str(BIN / "papermill"), f"notebooks/{name}.ipynb", str(out / f"{name}.ipynb")]
    command += ["--cwd", "notebooks", "--no-progress-bar", "-k", "python3"]
    for key, value in params.items():
        command += ["-p", key, str(value)]
    return command


NO_BYTECODE: dict[str, str] = {}  # set by --no-bytecode


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as the Makefile runs things
    env.update(NO_BYTECODE)
    return env


def fresh_store(folder: Path) -> dict[str, str]:
    """Environment for one timed run: its own MLflow store (created now, untimed) and runs dir."""
    env = {
        **base_env(),
        "MLFLOW_TRACKING_URI": f"sqlite:///{folder}/mlflow.db",
        "NBMILL_RUNS_DIR": str(folder / "runs"),
    }
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-c", "import mlflow; mlflow.search_experiments()"],
        env=env,
        check=True,
        capture_output=True,
    )
    return env


def timed(commands: list[list[str]], env: dict[str, str], cwd: Path = ROOT) -> float:
    start = time.perf_counter()
    for command in commands:
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"failed: {' '.join(command)}\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def table(title: str, times: dict[str, list[float]]) -> None:
    print(f"\n{title}\n")
    print(f"| {'variant':<34} | median s | min s | max s |")
    print(f"|{'-' * 36}|---------:|------:|------:|")
    for name, values in times.items():
        print(
            f"| {name:<34} | {statistics.median(values):8.2f} | {min(values):5.2f} "
            f"| {max(values):5.2f} |"
        )


def verdict(label: str, value: float, target: str, unit: str = "x") -> None:
    print(f"- {label}: {value:.2f}{unit} (target {target})")


def ratio(times: dict[str, list[float]], slow: str, fast: str) -> float:
    return statistics.median(times[slow]) / statistics.median(times[fast])


def ploomber_bin() -> Path:
    venv = ROOT / ".bench-venvs" / "ploomber"
    if not (venv / "bin" / "ploomber").exists():
        uv = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
        subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
        subprocess.run(
            [
                uv,
                "pip",
                "install",
                "-q",
                "--python",
                str(venv / "bin" / "python"),
                "ploomber==0.23.*",
                "pandas<3",
                "scikit-learn",
                "ipykernel",
            ],
            check=True,
        )
    return venv / "bin"


def tiny_papermill(root: Path) -> list[list[str]]:
    out = root / "papermill"
    out.mkdir(parents=True, exist_ok=True)
    commands = []
    for i, name in enumerate(projects.STEPS):
        params = {"out": out / f"{name}.txt"}
        if i:
            params["inp"] = out / f"{projects.STEPS[i - 1]}.txt"
        commands.append(papermill_command(name, out, params))
    return commands


def tiny(work: Path, repeat: int) -> tuple[dict, dict]:
    ploomber = ploomber_bin()
    env = {**base_env(), "PATH": f"{ploomber}{os.pathsep}{os.environ['PATH']}"}
    first: dict[str, list[float]] = {
        "nbmill run": [],
        "papermill CLI x4": [],
        "ploomber build --force": [],
    }
    again: dict[str, list[float]] = {
        "nbmill run (nothing changed)": [],
        "ploomber build (nothing changed)": [],
    }
    for i in range(repeat):
        mine = projects.tiny_nbmill(work / f"tiny-{i}")
        theirs = projects.tiny_ploomber(work / f"tiny-ploomber-{i}")
        command = [str(BIN / "nbmill"), "run", "pipelines/tiny.yml"]
        first["nbmill run"].append(timed([command], base_env(), mine))
        first["papermill CLI x4"].append(timed(tiny_papermill(mine), base_env(), mine))
        build = [str(ploomber / "ploomber"), "build", "--force"]
        first["ploomber build --force"].append(timed([build], env, theirs))
        again["nbmill run (nothing changed)"].append(timed([command], base_env(), mine))
        again["ploomber build (nothing changed)"].append(
            timed([[str(ploomber / "ploomber"), "build"]], env, theirs)
        )
        print(f"  tiny run {i + 1}/{repeat}", file=sys.stderr)
    return first, again


def diamond(work: Path, repeat: int) -> dict:
    times: dict[str, list[float]] = {"diamond, --jobs 2": [], "the longer branch alone": []}
    for i in range(repeat):
        both = projects.diamond(work / f"diamond-{i}")
        one = projects.diamond(work / f"branch-{i}", branches=("left",))
        for name, root in (("diamond, --jobs 2", both), ("the longer branch alone", one)):
            command = [str(BIN / "nbmill"), "run", "pipelines/diamond.yml", "--jobs", "2"]
            times[name].append(timed([command], base_env(), root))
        print(f"  diamond run {i + 1}/{repeat}", file=sys.stderr)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scenarios", default="default,tiny,rerun,diamond")
    parser.add_argument(
        "--no-bytecode",
        action="store_true",
        help="every child process compiles every module from source, as where "
        "PYTHONDONTWRITEBYTECODE is set and no .pyc file exists yet",
    )
    args = parser.parse_args()
    if args.no_bytecode:  # an empty cache prefix: no .pyc is found, and none is written
        prefix = tempfile.mkdtemp(prefix="nbmill-bench-no-pyc-")
        NO_BYTECODE.update(PYTHONDONTWRITEBYTECODE="1", PYTHONPYCACHEPREFIX=prefix)
    scenarios = set(args.scenarios.split(","))
    work = Path(tempfile.mkdtemp(prefix="nbmill-bench-"))
    bytecode = "off (compiled from source)" if args.no_bytecode else "on"
    print(f"{os.cpu_count()} cores, {args.repeat} runs of each, medians; bytecode cache {bytecode}")
    if "default" in scenarios:
        default(work, args.repeat)
    if scenarios & {"tiny", "rerun"}:
        first, again = tiny(work, args.repeat)
        table("four tiny chained notebooks (scikit-learn and pandas)", first)
        verdict(
            "papermill CLI x4 / nbmill run", ratio(first, "papermill CLI x4", "nbmill run"), ">= 4x"
        )
        verdict(
            "ploomber --force / nbmill run",
            ratio(first, "ploomber build --force", "nbmill run"),
            ">= 2.5x",
        )
        table("the same, again with nothing changed", again)
        rerun = statistics.median(again["nbmill run (nothing changed)"])
        verdict("nbmill run, nothing changed (s)", rerun, "< 1 s", unit="s")
    if "diamond" in scenarios:
        times = diamond(work, args.repeat)
        table("a diamond whose two middle steps sleep 5 s each", times)
        value = ratio(times, "diamond, --jobs 2", "the longer branch alone")
        verdict("diamond / the longer branch", value, "<= 1.2x")


FIRST = "nbmill run, first on the machine"


def default(work: Path, repeat: int) -> None:
    def variants(out: Path) -> dict[str, list[list[str]]]:
        return {
            "nbmill run": [nbmill(out / "runs")],
            FIRST: [nbmill(out / "runs")],
            "nbmill run --no-warm": [nbmill(out / "runs", "--no-warm")],
            "papermill CLI x4": papermill_steps(out / "papermill"),
            "plain script": [
                [sys.executable, str(ROOT / "bench" / "plain_pipeline.py"), str(out / "plain")]
            ],
        }

    names = list(variants(work))
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(repeat):  # interleaved, so drift on the machine hits every variant
        for v, name in enumerate(names):
            out = work / f"{i}-{v}"
            env = fresh_store(out)
            if name == FIRST:  # nothing learned yet: a user cache of its own, empty
                env["XDG_CACHE_HOME"] = str(out / "user-cache")
            times[name].append(timed(variants(out)[name], env))
            print(f"  run {i + 1}/{repeat}  {name:<22} {times[name][-1]:6.1f} s", file=sys.stderr)
    table("the default pipeline (prep, train, evaluate, deploy)", times)
    verdict("nbmill run / plain script", ratio(times, "nbmill run", "plain script"), "<= 1.2x")
    verdict("the first run on a machine / plain script", ratio(times, FIRST, "plain script"), "-")
    verdict(
        "papermill CLI x4 / nbmill run", ratio(times, "papermill CLI x4", "nbmill run"), ">= 2.5x"
    )


if __name__ == "__main__":
    main()
