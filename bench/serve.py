"""Serving benchmark: one MLflow sklearn model behind three servers, measured side by side.

    .venv/bin/python bench/serve.py [--concurrency 8] [--requests 2000] [--workers 1]
                                    [--servers nbmill,mlflow,azmlinfsrv]

Servers, each started in turn (never two at once) on a free port on 127.0.0.1 with the same
number of worker processes, then stopped (SIGTERM, then SIGKILL):

- nbmill:     ``nbmill serve MODEL`` (POST /score, Azure ML's ``input_data`` body, Bearer key).
- mlflow:     ``mlflow models serve -m MODEL --env-manager local`` (POST /invocations,
              ``dataframe_split`` body).
- azmlinfsrv: azureml-inference-server-http with bench/azureml_score.py (POST /score,
              ``input_data`` body), from its own virtual environment .bench-venvs/azmlinfsrv,
              made here on first use (it pins opentelemetry versions that conflict with MLflow).

Each server gets the same requests, built from held-out rows of the diabetes example: a 1-row
scenario and a 100-row scenario, at a fixed concurrency (one keep-alive connection per
concurrent client), after an unmeasured warm-up whose answers are checked against the model's
own predictions. Every measured answer must be HTTP 200; anything else counts as an error.
Request loops are bounded in count (--requests) and time (--time-limit). All traffic goes to
127.0.0.1 only.

The first row of the table is the load generator's ceiling: the same client against a trivial
server that answers a constant, so a server row near it would be measuring the client.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import math
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the project's .venv/bin: nbmill, mlflow, uvicorn
AZML_VENV = ROOT / ".bench-venvs" / "azmlinfsrv"
AZML_VERSION = "1.5.1"
SCORE_SCRIPT = ROOT / "bench" / "azureml_score.py"
HOST = "127.0.0.1"
SERVERS = ("nbmill", "mlflow", "azmlinfsrv")
PEERS = ("mlflow", "azmlinfsrv")
KEY = "bench-serve-key"
ROWS_BATCH = 100
WARMUP = 100
DISTINCT_BODIES = 32
REQUEST_TIMEOUT_S = 30.0
STARTUP_TIMEOUT_S = 180.0
CEILING_FACTOR = 10

# azmlinfsrv binds 0.0.0.0 with no flag to change it: this launcher sets its host to 127.0.0.1
# before running its CLI. With --peer-logging off it also puts a logging.json in the app root
# (the working directory), azmlinfsrv's documented way to override its logging, with its
# per-request loggers at WARNING.
AZML_LAUNCHER = """
import json, os, sys
from azureml_inference_server_http import amlserver
from azureml_inference_server_http.constants import PACKAGE_ROOT
amlserver.DEFAULT_HOST = "127.0.0.1"
if os.environ.get("BENCH_QUIET") == "1":
    with open(os.path.join(PACKAGE_ROOT, "logging.json")) as handle:
        config = json.load(handle)
    for name in ("azmlinfsrv", "gunicorn.access"):
        config["loggers"][name]["level"] = "WARNING"
    with open("logging.json", "w") as handle:
        json.dump(config, handle)
sys.argv[0] = "azmlinfsrv"
amlserver.run()
"""


# --- the load generator -------------------------------------------------------------------


class Connection(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection: one request in flight, responses parsed by hand
    (status line, Content-Length or chunked, Connection: close)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.closed = False
        self.head: tuple[int, int, bool, bool, int] | None = None  # status, length, chunked...

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            if self.head is not None and self.head[1] < 0 and not self.head[2]:
                self._finish(bytes(self.buffer[self.head[4] :]))  # body delimited by close
            else:
                self.waiter.set_exception(ConnectionError("connection closed mid-response"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is not None:
            self._parse()

    def request(self, payload: bytes) -> asyncio.Future:
        self.waiter = asyncio.get_running_loop().create_future()
        self.head = None
        self.transport.write(payload)
        return self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.closed = True

    def _parse(self) -> None:
        buffer = self.buffer
        if self.head is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(buffer[:end]).split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            length, chunked, close = -1, False, lines[0].startswith(b"HTTP/1.0")
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                elif name == b"connection":
                    close = value.strip().lower() == b"close"
            self.head = (status, length, chunked, close, end + 4)
        status, length, chunked, close, start = self.head
        if chunked:
            body, position = bytearray(), start
            while True:
                line_end = buffer.find(b"\r\n", position)
                if line_end < 0:
                    return
                size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
                if size == 0:
                    if len(buffer) < line_end + 4:
                        return
                    del buffer[: line_end + 4]
                    self._done(bytes(body))
                    return
                if len(buffer) < line_end + 2 + size + 2:
                    return
                body += buffer[line_end + 2 : line_end + 2 + size]
                position = line_end + 2 + size + 2
        if length < 0:
            return  # delimited by the server closing the connection
        if len(buffer) - start < length:
            return
        body = bytes(buffer[start : start + length])
        del buffer[: start + length]
        self._done(body)

    def _done(self, body: bytes) -> None:
        if self.head[3]:
            self.close()
        self._finish(body)

    def _finish(self, body: bytes) -> None:
        waiter, self.waiter = self.waiter, None
        status = self.head[0]
        self.head = None
        if waiter is not None and not waiter.done():
            waiter.set_result((status, body))


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    wall_s: float = 0.0
    client_cpu_s: float = 0.0

    def error(self, message: str) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = message[:300]


async def drive(
    port: int,
    requests: list[bytes],
    count: int,
    concurrency: int,
    time_limit_s: float,
    check: Callable[[int, bytes], str | None] | None = None,
) -> Outcome:
    """Send ``count`` requests (cycling through ``requests``) over ``concurrency`` connections,
    each with one request in flight; stop early at ``time_limit_s``."""
    loop = asyncio.get_running_loop()
    outcome = Outcome()
    issued = 0
    deadline = time.perf_counter() + time_limit_s

    def expire(future: asyncio.Future) -> None:
        if not future.done():
            future.set_exception(TimeoutError(f"no answer in {REQUEST_TIMEOUT_S:g} s"))

    async def client() -> None:
        nonlocal issued
        connection: Connection | None = None
        while issued < count and time.perf_counter() < deadline:
            index = issued
            issued += 1
            began = time.perf_counter()
            try:
                if connection is None or connection.closed:
                    _, connection = await loop.create_connection(Connection, HOST, port)
                future = connection.request(requests[index % len(requests)])
                timer = loop.call_later(REQUEST_TIMEOUT_S, expire, future)
                status, body = await future
                timer.cancel()
            except (OSError, TimeoutError, ValueError, IndexError) as exc:
                outcome.error(f"{type(exc).__name__}: {exc}")
                if connection is not None:
                    connection.close()
                connection = None
                continue
            outcome.latencies.append(time.perf_counter() - began)
            if status != 200:
                outcome.error(f"HTTP {status}: {body[:200]!r}")
            elif check is not None:
                problem = check(index % len(requests), body)
                if problem:
                    outcome.error(problem)
        if connection is not None:
            connection.close()

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    outcome.wall_s = time.perf_counter() - wall
    outcome.client_cpu_s = time.process_time() - cpu
    return outcome


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


# --- the constant server (the load generator's ceiling) ------------------------------------


class ConstantProtocol(asyncio.Protocol):
    ANSWER = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 19\r\n\r\n"
        b'{"predictions":[0]}'
    )

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in bytes(self.buffer[:end]).split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[: end + 4 + length]
            self.transport.write(self.ANSWER)


def run_constant_server(port: int) -> None:
    loop = new_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(loop.create_server(ConstantProtocol, HOST, port))
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    try:
        loop.run_forever()
    finally:
        server.close()


# --- servers ------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    argv: list[str]
    path: str  # the scoring path
    health: str
    shape: str  # "input_data" or "dataframe_split"
    headers: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = ROOT
    note: str = ""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def server_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # mlflow runs `uvicorn` by name
    env.pop("PYTHONPATH", None)
    env.update(extra)
    return env


def nbmill_available() -> str | None:
    """None when `nbmill serve` exists, else why not."""
    exe = BIN / "nbmill"
    if not exe.exists():
        return f"{exe} not found"
    probe = subprocess.run(
        [str(exe), "serve", "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    if probe.returncode != 0:
        return "`nbmill serve` is not available: " + (probe.stderr.strip().splitlines() or [""])[-1]
    return None


def azml_requirements() -> list[str]:
    """The packages of the azmlinfsrv environment: the server, and the model's stack at the
    same versions as this project's environment, so the same sklearn code predicts."""
    pins = [f"azureml-inference-server-http=={AZML_VERSION}"]
    for name in ("scikit-learn", "skops", "numpy", "pandas", "pyyaml"):
        pins.append(f"{name}=={metadata.version(name)}")
    return pins


def ensure_azml_venv(log: Callable[[str], None]) -> str | None:
    """Make (or refresh) .bench-venvs/azmlinfsrv; None when ready, else why not."""
    wanted = azml_requirements()
    stamp = AZML_VENV / "bench-requirements.json"
    python = AZML_VENV / "bin" / "python"
    if python.exists() and stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return None
    base = getattr(sys, "_base_executable", None) or shutil.which("python3") or sys.executable
    log(f"setting up {AZML_VENV} ({' '.join(wanted)}); this takes a minute")
    steps = []
    if not python.exists():
        steps.append([base, "-m", "venv", str(AZML_VENV)])
    steps.append([str(python), "-m", "pip", "install", "--quiet", *wanted])
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            return f"`{shlex.join(step)}` failed:\n{tail}"
    stamp.write_text(json.dumps(wanted))
    return None


def make_server(name: str, model_dir: Path, port: int, args, scratch: Path) -> Server:
    workers = str(args.workers)
    quiet = args.peer_logging == "off"
    if name == "nbmill":
        argv = [str(BIN / "nbmill"), "serve", str(model_dir), "--host", HOST, "--port", str(port)]
        argv += ["--workers", workers]
        collect = ["--collect-dir", str(scratch / "collected")]
        argv += ["--no-collect"] if args.nbmill_no_collect else collect
        return Server(
            name,
            argv,
            "/score",
            "/health",
            "input_data",
            headers={"Authorization": f"Bearer {KEY}"},
            env={"NBMILL_SERVE_KEY": KEY},
        )
    if name == "mlflow":
        argv = [str(BIN / "mlflow"), "models", "serve", "-m", str(model_dir), "--host", HOST]
        argv += ["--port", str(port), "--env-manager", "local", "--workers", workers]
        env = {"UVICORN_ACCESS_LOG": "false"} if quiet else {}
        return Server(name, argv, "/invocations", "/ping", "dataframe_split", env=env)
    if name == "azmlinfsrv":
        argv = [str(AZML_VENV / "bin" / "python"), "-c", AZML_LAUNCHER]
        argv += ["--entry_script", str(SCORE_SCRIPT), "--model_dir", str(model_dir)]
        argv += ["--port", str(port), "--worker_count", workers]
        env = {"BENCH_QUIET": "1" if quiet else "0"}
        app_root = scratch / "azml-app"
        app_root.mkdir(exist_ok=True)
        return Server(name, argv, "/score", "/", "input_data", env=env, cwd=app_root)
    if name == "constant":
        argv = [sys.executable, str(Path(__file__).resolve()), "--constant-server", str(port)]
        return Server(name, argv, "/score", "/", "input_data")
    raise ValueError(name)


class Running:
    """A server process in its own process group, its log in a file."""

    def __init__(self, server: Server, port: int, log_path: Path):
        self.server, self.port, self.log_path = server, port, log_path
        self.log = open(log_path, "wb")  # closed in stop()
        self.process = subprocess.Popen(
            server.argv,
            cwd=server.cwd,
            env=server_env(server.env),
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout_s: float) -> str | None:
        """None once the health path answers 200, else why not."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return f"exited with {self.process.returncode}:\n{self.log_tail()}"
            connection = http.client.HTTPConnection(HOST, self.port, timeout=2)
            try:
                connection.request("GET", self.server.health)
                if connection.getresponse().status == 200:
                    return None
            except (OSError, http.client.HTTPException):
                pass
            finally:
                connection.close()
            time.sleep(0.25)
        return f"not ready after {timeout_s:g} s:\n{self.log_tail()}"

    def cpu_seconds(self) -> float:
        """User + system CPU time of every live process in the server's process group."""
        total, tick = 0, os.sysconf("SC_CLK_TCK")
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == self.process.pid:  # field 5: process group
                total += int(fields[11]) + int(fields[12])  # fields 14, 15: utime, stime
        return total / tick

    def log_tail(self, lines: int = 20) -> str:
        self.log.flush()
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return "\n".join("    " + line for line in text[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)
            except ProcessLookupError:
                pass
        try:  # workers left behind in the group
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.log.close()


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


def encode(server: Server, port: int, columns: list[str], rows: list[list[float]]) -> bytes:
    body = json.dumps({server.shape: {"columns": columns, "data": rows}}).encode()
    head = [
        f"POST {server.path} HTTP/1.1",
        f"Host: {HOST}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in server.headers.items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def checker(expected: list[list[float]]) -> Callable[[int, bytes], str | None]:
    def check(index: int, body: bytes) -> str | None:
        try:
            got = json.loads(body)["predictions"]
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
    port = free_port()
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
            check = None if name == "constant" else checker(scenario.expected)
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
        "azmlinfsrv's request and access logs); default: as they ship",
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
        f"versions: mlflow {metadata.version('mlflow')}, scikit-learn "
        f"{metadata.version('scikit-learn')}, uvicorn {metadata.version('uvicorn')}, "
        f"azureml-inference-server-http {AZML_VERSION}\n"
    )
    print("\n".join(table(rows, label)))
    print()
    print("\n".join(verdicts(rows, scenarios)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
