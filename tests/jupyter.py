"""A real Jupyter Server (``jupyter_server``) or JupyterLab (``jupyterlab``) in a child process on
a free 127.0.0.1 port, with a token, rooted at a project; nbmill's extension loads as installed.
``call`` speaks to its REST API with the token, ``status`` also answers an HTTP error's code."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from nbmill._net import free_port


class Jupyter:
    def __init__(self, root: Path, app: str = "jupyter_server", env: dict[str, str] | None = None):
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = root.parent / f"{root.name}-{app}.log"
        with open(self.log, "wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", app, f"--ServerApp.root_dir={root}",
                 f"--port={self.port}", "--ip=127.0.0.1", "--no-browser", "--allow-root",
                 f"--IdentityProvider.token={self.token}"],
                stdout=output, stderr=subprocess.STDOUT, cwd=root,
                env={**os.environ, **(env or {})},
            )  # fmt: skip
        deadline = time.monotonic() + 90
        while True:
            try:
                self.call("GET", "/api/status")
                return
            except (urllib.error.URLError, ConnectionError):
                assert self.process.poll() is None, self.log.read_text()[-3000:]
                assert time.monotonic() < deadline, self.log.read_text()[-3000:]
                time.sleep(0.1)

    def call(self, method: str, path: str, body: dict | None = None, token: bool = True):
        request = urllib.request.Request(
            self.base + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"token {self.token}"} if token else {},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read() or b"null")

    def status(self, method: str, path: str, body: dict | None = None, token: bool = True):
        try:
            return self.call(method, path, body, token)
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def stop(self) -> None:
        """SIGTERM; SIGKILL if it has not stopped within 20 s."""
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
