"""The default training pipeline four ways, side by side: median wall time of several runs.

    .venv/bin/python bench/pipeline.py [--repeat 3]

- nbmill run            the real command: fresh kernel per step, started one step ahead,
                        record, hashes, HTML
- nbmill run --no-warm  the same, each kernel started only when its step begins
- papermill CLI x4      the same notebooks, one `papermill` call per step, in order
- plain script          the same code in one Python process (no notebooks, no record)

Every timed run gets a new MLflow store (created before its timer starts), so each registers
the first version of its model, which the gate promotes and the deploy step smoke-tests over
HTTP: all four do the same work. Figures, not asserts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
    commands = []
    for name, params in steps:
        command = [
            str(BIN / "papermill"),
            f"notebooks/{name}.ipynb",
            str(out / f"{name}.ipynb"),
            "--cwd",
            "notebooks",
            "--no-progress-bar",
            "-k",
            "python3",
        ]
        for key, value in params.items():
            command += ["-p", key, str(value)]
        commands.append(command)
    return commands


def fresh_store(folder: Path) -> dict[str, str]:
    """Environment for one timed run: its own MLflow store (created now, untimed) and runs dir."""
    env = {
        **os.environ,
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


def timed(commands: list[list[str]], env: dict[str, str]) -> float:
    start = time.perf_counter()
    for command in commands:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"failed: {' '.join(command)}\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nbmill-bench-"))

    def variants(out: Path) -> dict[str, list[list[str]]]:
        return {
            "nbmill run": [nbmill(out / "runs")],
            "nbmill run --no-warm": [nbmill(out / "runs", "--no-warm")],
            "papermill CLI x4": papermill_steps(out / "papermill"),
            "plain script": [
                [sys.executable, str(ROOT / "bench" / "plain_pipeline.py"), str(out / "plain")]
            ],
        }

    names = list(variants(work))
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(args.repeat):  # interleaved, so drift on the machine hits every variant
        for v, name in enumerate(names):
            out = work / f"{i}-{v}"
            env = fresh_store(out)
            times[name].append(timed(variants(out)[name], env))
            print(
                f"  run {i + 1}/{args.repeat}  {name:<22} {times[name][-1]:6.1f} s", file=sys.stderr
            )

    print(f"\ndefault pipeline (4 steps), {args.repeat} runs each, {os.cpu_count()} cores\n")
    print(f"| {'variant':<22} | median s | min s | max s |")
    print(f"|{'-' * 24}|---------:|------:|------:|")
    for name, values in times.items():
        print(
            f"| {name:<22} | {statistics.median(values):8.1f} | {min(values):5.1f} "
            f"| {max(values):5.1f} |"
        )


if __name__ == "__main__":
    main()
