"""The benchmarks' server processes: nbmill serve, mlflow models serve, azmlinfsrv, MLServer and
BentoML (each of those three from a virtual environment of its own, made here) and the constant
server, each started in its own process group and stopped."""

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
MLSERVER_VENV = ROOT / ".bench-venvs" / "mlserver"
MLSERVER_VERSION = "1.7.1"  # mlserver and mlserver-mlflow are released together
# uvloop 0.22 made asyncio.get_event_loop() raise without a running loop, and MLServer 1.7.1's
# inference workers call it at start, so they die and the model never loads: keep 0.21.
MLSERVER_UVLOOP = "0.21.0"
MLSERVER_MODEL = "diabetes"  # the model's name in MLServer's routes
BENTOML_VENV = ROOT / ".bench-venvs" / "bentoml"
BENTOML_VERSION = "1.4.40"
BENTOML_SERVICE = "bentoml_service:Diabetes"  # bench/bentoml_service.py
UV = ROOT / ".tools" / "bin" / "uv"
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
    shape: str  # "input_data", "dataframe_split", "v2" (the V2 inference protocol) or "bentoml"
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


def mlserver_requirements() -> list[str]:
    """The packages of the MLServer environment: the server and its MLflow runtime, MLflow at
    the version of this project's mlflow-skinny (the one that saved the model), and the model's
    stack at the same versions as this project's environment."""
    pins = [f"mlserver=={MLSERVER_VERSION}", f"mlserver-mlflow=={MLSERVER_VERSION}"]
    pins.append(f"mlflow=={metadata.version('mlflow-skinny')}")
    for name in ("scikit-learn", "skops", "numpy", "pandas"):
        pins.append(f"{name}=={metadata.version(name)}")
    pins.append(f"uvloop=={MLSERVER_UVLOOP}")
    return pins


def bentoml_requirements() -> list[str]:
    """The packages of the BentoML environment: BentoML, and mlflow-skinny and the model's stack
    at the same versions as this project's environment."""
    pins = [f"bentoml=={BENTOML_VERSION}", f"mlflow-skinny=={metadata.version('mlflow-skinny')}"]
    for name in ("scikit-learn", "skops", "numpy", "pandas"):
        pins.append(f"{name}=={metadata.version(name)}")
    return pins


def ensure_venv(
    venv: Path, wanted: list[str], steps: list[list[str]], log: Callable[[str], None]
) -> str | None:
    """Run ``steps`` (which make ``venv`` and install ``wanted``) unless ``venv`` already holds
    exactly ``wanted``; None when ready, else why not."""
    stamp = venv / "bench-requirements.json"
    if (venv / "bin" / "python").exists() and stamp.exists():
        if json.loads(stamp.read_text()) == wanted:
            return None
    log(f"setting up {venv} ({' '.join(wanted)}); this takes a minute")
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=900, cwd=ROOT)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            return f"`{shlex.join(step)}` failed:\n{tail}"
    stamp.write_text(json.dumps(wanted))
    return None


def base_python() -> str:
    return getattr(sys, "_base_executable", None) or shutil.which("python3") or sys.executable


def ensure_azml_venv(log: Callable[[str], None]) -> str | None:
    """Make (or refresh) .bench-venvs/azmlinfsrv with venv and pip; None when ready, else why
    not."""
    wanted = azml_requirements()
    python = AZML_VENV / "bin" / "python"
    steps = [] if python.exists() else [[base_python(), "-m", "venv", str(AZML_VENV)]]
    steps.append([str(python), "-m", "pip", "install", "--quiet", *wanted])
    return ensure_venv(AZML_VENV, wanted, steps, log)


def uv_venv_steps(venv: Path, wanted: list[str]) -> list[list[str]]:
    """Commands that make ``venv`` with uv (the project's .tools/bin/uv, installed by
    `make .tools/bin/uv` if missing) and install ``wanted`` into it."""
    python = venv / "bin" / "python"
    steps = [] if UV.exists() else [["make", str(UV.relative_to(ROOT))]]
    if not python.exists():
        steps.append([str(UV), "venv", "--quiet", "--python", base_python(), str(venv)])
    steps.append([str(UV), "pip", "install", "--quiet", "--python", str(python), *wanted])
    return steps


def ensure_mlserver_venv(log: Callable[[str], None]) -> str | None:
    """Make (or refresh) .bench-venvs/mlserver with uv; None when ready, else why not."""
    wanted = mlserver_requirements()
    return ensure_venv(MLSERVER_VENV, wanted, uv_venv_steps(MLSERVER_VENV, wanted), log)


def ensure_bentoml_venv(log: Callable[[str], None]) -> str | None:
    """Make (or refresh) .bench-venvs/bentoml with uv; None when ready, else why not."""
    wanted = bentoml_requirements()
    return ensure_venv(BENTOML_VENV, wanted, uv_venv_steps(BENTOML_VENV, wanted), log)


def mlserver_settings(model_dir: Path, ports: list[int], args, app_root: Path) -> None:
    """MLServer's two settings files in ``app_root`` (the folder given to ``mlserver start``, and
    its working directory, where it keeps .metrics and .envs).

    settings.json: every listener on 127.0.0.1 (HTTP on ``ports[0]``, gRPC and Prometheus metrics,
    which cannot be turned off or are on by default, on the two others); ``parallel_workers`` =
    --workers inference processes, beside the main process that serves HTTP; ``debug`` as shipped
    (true: uvicorn's access log) unless --peer-logging off. model-settings.json: the MLflow model
    folder through the MLflow runtime, which takes the pandas content type from its signature."""
    http, grpc, metrics = ports
    settings = {
        "host": HOST,
        "http_port": http,
        "grpc_port": grpc,
        "metrics_port": metrics,
        "parallel_workers": args.workers,
    }
    if args.peer_logging == "off":
        settings["debug"] = False
    model = {
        "name": MLSERVER_MODEL,
        "implementation": "mlserver_mlflow.MLflowRuntime",
        "parameters": {"uri": str(model_dir)},
    }
    (app_root / "settings.json").write_text(json.dumps(settings, indent=2))
    (app_root / "model-settings.json").write_text(json.dumps(model, indent=2))


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
    if name == "mlserver":
        from nbmill._net import free_port

        ports = [port]
        while len(ports) < 3:  # gRPC and metrics: two more free ports, none the same
            candidate = free_port(HOST)
            if candidate not in ports:
                ports.append(candidate)
        app_root = scratch / "mlserver-app"
        app_root.mkdir(exist_ok=True)
        mlserver_settings(model_dir, ports, args, app_root)
        argv = [str(MLSERVER_VENV / "bin" / "mlserver"), "start", str(app_root)]
        route = f"/v2/models/{MLSERVER_MODEL}"
        # ready once the model is loaded: /v2/health/ready also answers 200 with no model
        return Server(name, argv, f"{route}/infer", f"{route}/ready", "v2", cwd=app_root)
    if name == "bentoml":
        argv = [str(BENTOML_VENV / "bin" / "bentoml"), "serve", BENTOML_SERVICE]
        argv += ["--working-dir", str(ROOT / "bench"), "--host", HOST, "--port", str(port)]
        env = {
            "BENCH_MODEL_DIR": str(model_dir),
            "BENCH_WORKERS": workers,
            "BENCH_QUIET": "1" if quiet else "0",
            "BENTOML_HOME": str(scratch / "bentoml-home"),  # not ~/bentoml
            "BENTOML_DO_NOT_TRACK": "true",  # no usage reports: nothing leaves 127.0.0.1
        }
        app_root = scratch / "bentoml-app"
        app_root.mkdir(exist_ok=True)
        return Server(name, argv, "/predict", "/readyz", "bentoml", env=env, cwd=app_root)
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

    def members(self) -> dict[int, tuple[int, int, int]]:
        """Every live process of the server: its process group, and its descendants that left
        the group (BentoML's process manager starts each worker in a session of its own).
        Maps pid to (CPU ticks, user + system; start time; process group)."""
        table = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            # fields[1], [2], [11], [12], [19]: stat fields 4, 5, 14, 15, 22: parent, process
            # group, utime, stime, start time
            table[int(entry)] = fields

        root = self.process.pid

        def descends(pid: int) -> bool:
            seen = set()
            while pid in table and pid not in seen:
                if pid == root:
                    return True
                seen.add(pid)
                pid = int(table[pid][1])
            return False

        return {
            pid: (int(f[11]) + int(f[12]), int(f[19]), int(f[2]))
            for pid, f in table.items()
            if int(f[2]) == root or descends(pid)
        }

    def cpu_seconds(self) -> float:
        """User + system CPU time of every live process of the server (``members``)."""
        return sum(m[0] for m in self.members().values()) / os.sysconf("SC_CLK_TCK")

    def log_tail(self, lines: int = 20) -> str:
        self.log.flush()
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return "\n".join("    " + line for line in text[-lines:])

    def stop(self) -> None:
        strays = {}  # descendants outside the group: no longer found by parent once it exits
        if self.process.poll() is None:
            members = self.members().items()
            strays = {pid: m[1] for pid, m in members if m[2] != self.process.pid}
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
        for pid, started in strays.items():  # the same process (start time), still alive
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[19]) == started:
                    os.kill(pid, signal.SIGKILL)
            except (OSError, IndexError, ValueError):
                pass
        self.log.close()
