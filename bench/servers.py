"""The benchmarks' server processes: nbmill serve, mlflow models serve, azmlinfsrv (and its
virtual environment) and the constant server, each started in its own process group and stopped."""

from __future__ import annotations

import http.client
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from loadgen import HOST

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the project's .venv/bin: nbmill, mlflow, uvicorn
AZML_VENV = ROOT / ".bench-venvs" / "azmlinfsrv"
AZML_VERSION = "1.5.1"
SCORE_SCRIPT = ROOT / "bench" / "azureml_score.py"
CEILING_SCRIPT = ROOT / "bench" / "serve.py"  # its --constant-server PORT: the constant server
KEY = "bench-serve-key"

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
        argv = [sys.executable, str(CEILING_SCRIPT), "--constant-server", str(port)]
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
