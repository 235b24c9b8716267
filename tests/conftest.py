"""Fixtures that build real things: notebooks, pipelines and projects in temporary folders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
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
