"""Fixtures that build real things: notebooks, pipelines and projects in temporary folders."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]


def write_notebook(path: Path, parameters: str | None, *cells: str) -> Path:
    """A notebook with a `parameters` cell (unless None) followed by code cells."""
    nb = new_notebook(
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        }
    )
    nb.cells.append(new_markdown_cell(f"# {path.stem}"))
    if parameters is not None:
        cell = new_code_cell(parameters)
        cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    nb.cells.extend(new_code_cell(source) for source in cells)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def nbmill(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real command line, in a child process (``env`` adds to this process's environment)."""
    return subprocess.run(
        [sys.executable, "-m", "nbmill", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


class Receiver:
    """A real HTTP server on 127.0.0.1 that records POSTs and refuses the first ``refuse``."""

    def __init__(self, refuse: int = 0, status: int = 503):
        self.refuse, self.status = refuse, status
        self.attempts = 0
        self.received: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.attempts += 1
                if receiver.attempts <= receiver.refuse:
                    self.send_response(receiver.status)
                    self.end_headers()
                    return
                receiver.received.append(
                    {"headers": dict(self.headers), "body": json.loads(body), "path": self.path}
                )
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook/tok-s3cr3t-0042"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def run_fields(**overrides) -> dict:
    """The fields of a run.json that the runner fills in before the first step (a pipeline of
    one step, `prep`); RunRecord.create adds the id, status and environment."""
    fields = {
        "pipeline": {"name": "p", "file": "pipelines/p.yml", "sha256": "0" * 64},
        "params_file": None,
        "started_at": "2026-11-29T02:15:02.311Z",
        "ended_at": None,
        "duration_s": None,
        "who": "ada",
        "why": "a test",
        "git": {"commit": None, "dirty": None, "branch": None},
        "host": "host",
        "python": "3.11.7",
        "platform": "Linux",
        "ci": {},
        "steps": {"prep": {"status": "pending", "notebook": "notebooks/prep.ipynb", "params": {}}},
        "metrics": {},
        "error": None,
    }
    return {**fields, **overrides}


def only_run(runs_dir: Path) -> Path:
    """The one run folder in ``runs_dir`` (beside it: the ledger and its lock)."""
    (run_dir,) = [p for p in runs_dir.iterdir() if (p / "run.json").exists()]
    return run_dir


def load_run(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An empty project folder (pipelines/ marks it as the project root)."""
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "notebooks").mkdir()
    return tmp_path


def saved_model(folder: Path, alpha: float = 1.0) -> dict:
    """The example's model fitted on its usual split and saved as an MLflow model folder,
    ``folder / "model"``: {"dir", "fitted", "train", "test"}."""
    from nbmill_example import diabetes

    train, test = diabetes.split(diabetes.load(), test_size=0.2, seed=42)
    fitted = diabetes.fit(train, alpha=alpha)
    diabetes.save_model(fitted, train, folder / "model")
    return {"dir": folder / "model", "fitted": fitted, "train": train, "test": test}


@contextmanager
def mlflow_store(folder: Path, experiment: str) -> Iterator[str]:
    """A sqlite MLflow store in ``folder``, with ``experiment`` made and current, for the
    block: this process's tracking URI and MLFLOW_TRACKING_URI (its children's) point at it,
    outside any nbmill run. Yields its URI."""
    import mlflow

    from nbmill import context
    from nbmill.project.config import artifact_root

    uri = f"sqlite:///{folder}/mlflow.db"
    previous = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        for key in (context.ENV_RUN_DIR, context.ENV_RUN_ID, context.ENV_STEP):
            patch.delenv(key, raising=False)
        mlflow.set_tracking_uri(uri)
        try:
            mlflow.create_experiment(experiment, artifact_location=artifact_root(uri, experiment))
            mlflow.set_experiment(experiment)
            yield uri
        finally:
            mlflow.set_tracking_uri(previous)


class ServeProcess:
    """The real ``nbmill serve`` in a child process on a free 127.0.0.1 port.

    Its output (stdout and stderr together) goes to a file, ``log`` or else a temporary one
    removed by ``stop``, never to a pipe: a pipe nobody reads fills up (64 KiB on Linux) and
    then blocks a chatty service in the middle of a write."""

    def __init__(
        self,
        model_ref: Path | str,
        cwd: Path | None = None,
        collect_dir: Path | None = None,
        workers: int = 1,
        log: Path | None = None,
        extra: tuple[str, ...] = (),
    ):
        from nbmill._net import free_port

        self.port, self.key = free_port(), secrets.token_urlsafe(24)
        self.base = f"http://127.0.0.1:{self.port}"
        self._temporary_log = log is None
        if log is None:
            fd, name = tempfile.mkstemp(prefix="nbmill-serve-", suffix=".log")
            os.close(fd)
            log = Path(name)
        self.log = Path(log)
        collect = ["--collect-dir", str(collect_dir)] if collect_dir else ["--no-collect"]
        command = [sys.executable, "-m", "nbmill", "serve", str(model_ref)]
        command += ["--port", str(self.port), "--workers", str(workers), *collect, *extra]
        with open(self.log, "wb") as output:  # the child has its own handle on it
            self.process = subprocess.Popen(
                command,
                env={**os.environ, "NBMILL_SERVE_KEY": self.key},
                cwd=cwd,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a group of its own, as a service manager starts it
            )

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"nbmill serve did not start: {self.output()}")
            try:
                with urllib.request.urlopen(f"{self.base}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"no answer on {self.base}/health in {timeout}s")
            time.sleep(0.1)

    def output(self, limit: int = 500) -> str:
        """The last ``limit`` characters the service wrote."""
        with open(self.log, "rb") as handle:
            handle.seek(max(0, os.fstat(handle.fileno()).st_size - limit * 4))  # UTF-8: 1-4 bytes
            return handle.read().decode("utf-8", "replace").strip()[-limit:]

    def stop(self, group: bool = False) -> int:
        """SIGTERM (to its whole process group with ``group``, as a service manager stops a
        service), then the exit code (SIGKILL after 30 s); a temporary log is removed."""
        try:
            if group:
                os.killpg(self.process.pid, signal.SIGTERM)
            else:
                self.process.terminate()
            try:
                return self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                return self.process.wait()
        finally:
            if self._temporary_log:
                self.log.unlink(missing_ok=True)
