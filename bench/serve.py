"""Serving benchmark: one MLflow sklearn model behind five servers, measured side by side.

    .venv/bin/python bench/serve.py [--concurrency 8] [--requests 2000] [--workers 1]
                                    [--servers nbmill,mlflow,azmlinfsrv,mlserver,bentoml]

Servers, each started in turn (never two at once) on a free port on 127.0.0.1 with the same
number of worker processes, then stopped (SIGTERM, then SIGKILL):

- nbmill:     ``nbmill serve MODEL`` (POST /score, Azure ML's ``input_data`` body, Bearer key).
- mlflow:     ``mlflow models serve -m MODEL --env-manager local`` (POST /invocations,
              ``dataframe_split`` body).
- azmlinfsrv: azureml-inference-server-http with bench/azureml_score.py (POST /score,
              ``input_data`` body), from its own virtual environment .bench-venvs/azmlinfsrv,
              made here on first use (it pins opentelemetry versions that conflict with MLflow).
- mlserver:   Seldon's MLServer with its MLflow runtime (``mlserver_mlflow.MLflowRuntime``) on
              the same model folder, ``mlserver start DIR`` with a settings.json and a
              model-settings.json written there: ``parallel_workers`` = --workers inference
              processes (MLServer's default is 1; 0 would predict in the HTTP process), beside
              its main process, which serves HTTP and hands each request to a worker; gRPC and
              Prometheus metrics on two more free ports. Requests use the V2 inference protocol
              that KServe uses (POST /v2/models/diabetes/infer): one FP64 tensor per column and
              the pandas content type, so the pyfunc model gets the signature's DataFrame. From
              its own virtual environment .bench-venvs/mlserver, made here with uv on first use
              (MLServer caps fastapi below the project's version, and its MLflow runtime
              needs the full mlflow package, pinned at the project's mlflow-skinny version).
- bentoml:    BentoML with bench/bentoml_service.py, ``bentoml serve`` (POST /predict,
              ``{"input_data": {column: [values]}}``, its DataFrame JSON in the "columns" orient;
              each of the --workers processes serves HTTP and predicts), the model loaded as
              MLflow's pyfunc; from its own virtual environment .bench-venvs/bentoml, made here
              with uv on first use; usage tracking off.

Each server gets the same requests, built from held-out rows of the diabetes example: a 1-row
scenario and a 100-row scenario, at a fixed concurrency (one keep-alive connection per
concurrent client), after an unmeasured warm-up whose answers are checked against the model's
own predictions. Every measured answer must be HTTP 200; anything else counts as an error.
Request loops are bounded in count (--requests) and time (--time-limit). All traffic goes to
127.0.0.1 only.

The first row of the table is the load generator's ceiling: the same client against a trivial
server that answers a constant, so a server row near it would be measuring the client.

This file holds the scenarios, the model, the runs and the report; the load generator is in
bench/loadgen.py and the server processes in bench/servers.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from loadgen import HOST, Outcome, drive, new_loop, percentile, run_constant_server
from servers import (
    AZML_VERSION,
    BENTOML_VERSION,
    MLSERVER_VERSION,
    Running,
    Server,
    ensure_azml_venv,
    ensure_bentoml_venv,
    ensure_mlserver_venv,
    make_server,
    nbmill_available,
)

SERVERS = ("nbmill", "mlflow", "azmlinfsrv", "mlserver", "bentoml")
PEERS = ("mlflow", "azmlinfsrv", "mlserver", "bentoml")
ROWS_BATCH = 100
WARMUP = 100
DISTINCT_BODIES = 32
STARTUP_TIMEOUT_S = 180.0
CEILING_FACTOR = 10


# --- requests -----------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    rows: int
    count: int
    bodies: list[list[list[float]]]  # DISTINCT_BODIES lists of rows
    expected: list[list[float]]  # the model's predictions for each body


def build_scenarios(args, scratch: Path) -> tuple[Path, list[str], list[Scenario]]:
    """Train and save the example model; 1-row and 100-row bodies from held-out rows."""
    import warnings

    warnings.filterwarnings("ignore")
    from nbmill_example import diabetes

    train, test = diabetes.split(diabetes.load(), 0.2, 42)
    model = diabetes.fit(train, 1.0)
    model_dir = scratch / "model"
    diabetes.save_model(model, train, model_dir)
    rows = test[diabetes.FEATURES].to_numpy(dtype=float).tolist()
    columns = list(diabetes.FEATURES)
    scenarios = []
    import pandas as pd

    for name, size, count in (
        ("1 row", 1, args.requests),
        (f"{ROWS_BATCH} rows", ROWS_BATCH, args.batch_requests),
    ):
        bodies = []
        for i in range(DISTINCT_BODIES):
            start = (i * 7) % len(rows)  # a different window of the held-out rows, wrapping
            bodies.append([rows[(start + j) % len(rows)] for j in range(size)])
        expected = [model.predict(pd.DataFrame(b, columns=columns)).tolist() for b in bodies]
        scenarios.append(Scenario(name, size, count, bodies, expected))
    return model_dir, columns, scenarios


def payload(shape: str, columns: list[str], rows: list[list[float]]) -> dict:
    """The request body for ``rows``: Azure ML's or MLflow's split DataFrame, a V2 inference
    request with one tensor per column that MLServer's pandas codec turns into a DataFrame, or
    BentoML's DataFrame in the "columns" orient (one list per column)."""
    if shape == "bentoml":
        return {"input_data": {c: [r[i] for r in rows] for i, c in enumerate(columns)}}
    if shape == "v2":
        return {
            "parameters": {"content_type": "pd"},
            "inputs": [
                {
                    "name": column,
                    "shape": [len(rows)],
                    "datatype": "FP64",
                    "data": [r[i] for r in rows],
                }
                for i, column in enumerate(columns)
            ],
        }
    return {shape: {"columns": columns, "data": rows}}


def predictions(shape: str, body: bytes) -> list[float]:
    """The predictions in an answer: ``{"predictions": [...]}``, a V2 inference response's single
    output tensor (its data, flattened in row-major order), or BentoML's bare list."""
    answer = json.loads(body)
    if shape == "bentoml":
        if not isinstance(answer, list):
            raise TypeError("not a list")
        return answer
    if shape == "v2":
        (output,) = answer["outputs"]
        return output["data"]
    return answer["predictions"]


def encode(server: Server, port: int, columns: list[str], rows: list[list[float]]) -> bytes:
    body = json.dumps(payload(server.shape, columns, rows)).encode()
    head = [
        f"POST {server.path} HTTP/1.1",
        f"Host: {HOST}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in server.headers.items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def checker(expected: list[list[float]], shape: str) -> Callable[[int, bytes], str | None]:
    def check(index: int, body: bytes) -> str | None:
        try:
            got = predictions(shape, body)
        except (ValueError, KeyError, TypeError):
            return f"not a predictions answer: {body[:200]!r}"
        want = expected[index]
        if len(got) != len(want) or not all(
            abs(a - b) <= 1e-6 * max(1, abs(b)) for a, b in zip(got, want, strict=True)
        ):
            return f"predictions differ from the model's: {got[:3]} vs {want[:3]}"
        return None

    return check


# --- one run ------------------------------------------------------------------------------


@dataclass
class Row:
    server: str
    scenario: str
    rows: int
    outcome: Outcome | None = None
    server_cpu_s: float = 0.0
    other_cpu_s: float = 0.0  # everything else on the machine meanwhile
    unavailable: str = ""

    @property
    def rps(self) -> float:
        o = self.outcome
        return len(o.latencies) / o.wall_s if o and o.wall_s else math.nan

    def p(self, q: float) -> float:
        return percentile(sorted(self.outcome.latencies), q) * 1000 if self.outcome else math.nan


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (all cores, all processes)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:8]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait


def wait_quiet(limit_s: float, log: Callable[[str], None], name: str) -> None:
    """Wait (at most ``limit_s``) until other processes use under 0.2 cores for a second."""
    deadline, busy = time.monotonic() + limit_s, math.nan
    while True:
        before = machine_busy_seconds()
        time.sleep(1.0)
        busy = machine_busy_seconds() - before
        if busy < 0.2 or time.monotonic() > deadline:
            break
    if busy >= 0.2:
        log(f"warning: other processes use {busy:.1f} cores before {name}: expect noise")


def bench_server(name, model_dir, columns, scenarios, args, scratch, loop, log) -> list[Row]:
    from nbmill._net import free_port

    port = free_port(HOST)
    server = make_server(name, model_dir, port, args, scratch)
    running = Running(server, port, scratch / f"{name}.log")
    rows = []
    try:
        problem = running.wait_ready(STARTUP_TIMEOUT_S)
        if problem:
            log(f"{name}: {problem}")
            return [Row(name, s.name, s.rows, unavailable="did not start") for s in scenarios]
        for scenario in scenarios:
            requests = [encode(server, port, columns, body) for body in scenario.bodies]
            check = None if name == "constant" else checker(scenario.expected, server.shape)
            warm = loop.run_until_complete(
                drive(port, requests, WARMUP, args.concurrency, args.time_limit, check)
            )
            if warm.errors:
                log(f"{name} {scenario.name}: warm-up errors: {warm.errors} ({warm.first_error})")
            # the ceiling gets more requests: at its speed the default count is a blip
            count = scenario.count * (CEILING_FACTOR if name == "constant" else 1)
            wait_quiet(args.wait_quiet, log, f"{name} {scenario.name}")
            cpu, machine_cpu = running.cpu_seconds(), machine_busy_seconds()
            outcome = loop.run_until_complete(
                drive(port, requests, count, args.concurrency, args.time_limit)
            )
            row = Row(name, scenario.name, scenario.rows, outcome, running.cpu_seconds() - cpu)
            row.other_cpu_s = max(
                0.0,
                machine_busy_seconds() - machine_cpu - outcome.client_cpu_s - row.server_cpu_s,
            )
            outcome.errors += warm.errors
            outcome.first_error = outcome.first_error or warm.first_error
            if outcome.first_error:
                log(f"{name} {scenario.name}: first error: {outcome.first_error}")
            if len(outcome.latencies) + outcome.errors < count:
                log(f"{name} {scenario.name}: time limit reached after {len(outcome.latencies)}")
            rows.append(row)
            log(f"{name} {scenario.name}: {row.rps:,.0f} req/s, p99 {row.p(99):.2f} ms")
    finally:
        running.stop()
        if args.log_dir:
            Path(args.log_dir).mkdir(parents=True, exist_ok=True)
            shutil.copy(running.log_path, Path(args.log_dir) / running.log_path.name)
    return rows


def fmt(value: float, digits: int = 0) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def table(rows: list[Row], label: dict[str, str]) -> list[str]:
    lines = [
        "| server | scenario | req/s | rows/s | p50 ms | p99 ms | errors "
        "| client CPU | server CPU | other CPU |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        if r.unavailable:
            lines.append(f"| {label[r.server]} | {r.scenario} | {r.unavailable} | | | | | | | |")
            continue
        o = r.outcome
        lines.append(
            f"| {label[r.server]} | {r.scenario} | {fmt(r.rps)} | {fmt(r.rps * r.rows)} "
            f"| {fmt(r.p(50), 2)} | {fmt(r.p(99), 2)} | {o.errors} "
            f"| {o.client_cpu_s / o.wall_s:.0%} | {r.server_cpu_s / o.wall_s:.0%} "
            f"| {r.other_cpu_s / o.wall_s:.0%} |"
        )
    return lines


def verdicts(rows: list[Row], scenarios: list[Scenario]) -> list[str]:
    lines = []
    for scenario in scenarios:
        here = {r.server: r for r in rows if r.scenario == scenario.name and not r.unavailable}
        peers = [here[p] for p in PEERS if p in here]
        if "nbmill" not in here or not peers:
            lines.append(f"- {scenario.name}: no ratio (nbmill or both peers unavailable)")
            continue
        ours, peer = here["nbmill"], max(peers, key=lambda r: r.rps)
        throughput, p99 = ours.rps / peer.rps, ours.p(99) / peer.p(99)
        met = "met" if throughput >= 2 and p99 <= 1 and not ours.outcome.errors else "NOT met"
        lines.append(
            f"- {scenario.name}: nbmill/{peer.server} (the faster peer): throughput "
            f"{throughput:.2f}x, p99 {p99:.2f}x -> target (>= 2x, p99 <= 1x) {met}"
        )
    return lines


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=8, help="connections in flight (8)")
    parser.add_argument("--requests", type=int, default=2000, help="1-row requests (2000)")
    parser.add_argument(
        "--batch-requests", type=int, help=f"{ROWS_BATCH}-row requests (default: --requests / 4)"
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes per server (1)")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated (all)")
    parser.add_argument(
        "--time-limit", type=float, default=60.0, help="seconds per scenario at most (60)"
    )
    parser.add_argument(
        "--peer-logging",
        choices=("default", "off"),
        default="default",
        help="'off' turns off the peers' per-request log lines (mlflow's uvicorn access log, "
        "azmlinfsrv's request and access logs, MLServer's access log through its debug "
        "setting, BentoML's access log); default: as they ship",
    )
    parser.add_argument(
        "--nbmill-no-collect",
        action="store_true",
        help="serve without nbmill's request collection (default: collect, as deployed)",
    )
    parser.add_argument("--no-ceiling", action="store_true", help="skip the constant server row")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=120.0,
        help="before each server, wait up to this many seconds for other work to stop (120)",
    )
    parser.add_argument("--log-dir", help="keep each server's log here (default: discarded)")
    parser.add_argument("--constant-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.constant_server:
        run_constant_server(args.constant_server)
        return 0
    if args.batch_requests is None:
        args.batch_requests = max(1, args.requests // 4)
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SERVERS))
    if unknown or args.concurrency < 1 or args.requests < 1 or args.workers < 1:
        parser.error(f"unknown servers {unknown}" if unknown else "counts must be >= 1")

    def log(message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)

    scratch = Path(tempfile.mkdtemp(prefix="nbmill-bench-serve-"))
    loop = new_loop()
    asyncio.set_event_loop(loop)
    rows: list[Row] = []
    failed = False
    try:
        log("training and saving the example model")
        model_dir, columns, scenarios = build_scenarios(args, scratch)
        plan = (["constant"] if not args.no_ceiling else []) + names
        for name in plan:
            reason = None
            if name == "nbmill":
                reason = nbmill_available()
            elif name == "azmlinfsrv":
                reason = ensure_azml_venv(log)
            elif name == "mlserver":
                reason = ensure_mlserver_venv(log)
            elif name == "bentoml":
                reason = ensure_bentoml_venv(log)
            if reason:
                log(f"{name}: not available: {reason}")
                rows += [Row(name, s.name, s.rows, unavailable="not available") for s in scenarios]
                failed |= name != "nbmill"
                continue
            log(f"{name}: starting")
            got = bench_server(name, model_dir, columns, scenarios, args, scratch, loop, log)
            failed |= any(r.unavailable or r.outcome.errors for r in got)
            rows += got
    finally:
        loop.close()
        shutil.rmtree(scratch, ignore_errors=True)

    label = {
        "constant": "load generator ceiling (constant answer)",
        "nbmill": "nbmill serve",
        "mlflow": "mlflow models serve",
        "azmlinfsrv": "azmlinfsrv",
        "mlserver": "MLServer (MLflow runtime)",
        "bentoml": "BentoML",
    }
    command = shlex.join(
        [".venv/bin/python", "bench/serve.py", *(sys.argv[1:] if argv is None else argv)]
    )
    print(f"\n{command}")
    print(
        f"machine: {machine()}; concurrency {args.concurrency}, {args.workers} worker process(es) "
        f"per server, {args.requests} 1-row / {args.batch_requests} {ROWS_BATCH}-row requests "
        f"after {WARMUP} warm-up requests each (the ceiling row: {CEILING_FACTOR}x as many); "
        f"peer logging: {args.peer_logging}; "
        f"nbmill collection: {'off' if args.nbmill_no_collect else 'on'}"
    )
    print(
        f"versions: mlflow-skinny {metadata.version('mlflow-skinny')}, scikit-learn "
        f"{metadata.version('scikit-learn')}, uvicorn {metadata.version('uvicorn')}, "
        f"azureml-inference-server-http {AZML_VERSION}, mlserver and mlserver-mlflow "
        f"{MLSERVER_VERSION}, bentoml {BENTOML_VERSION}\n"
    )
    print("\n".join(table(rows, label)))
    print()
    print("\n".join(verdicts(rows, scenarios)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
