"""MLflow as Azure ML serves it: a real MLflow tracking server on 127.0.0.1 (full MLflow, in a
tool environment of its own, at the version of mlflow-skinny in uv.lock), behind a gateway that
answers only what Azure ML's tracking service implements, per Microsoft's support matrix
("MLflow and Azure Machine Learning"):

- MLflow 3's logged-models API is not implemented: ``/api/2.0/mlflow/logged-models*`` -> 404
  (Azure/azure-sdk-for-python#44896);
- registered-model aliases are not in the matrix: ``.../registered-models/alias*`` -> 404;
- tags are listed for model versions, not for registered models:
  ``.../registered-models/set-tag`` and ``delete-tag`` -> 404;
- model versions and registered models are searched by name only: a filter on tags -> 400.

Everything else is passed through unchanged, artifacts included (they stand in for the
workspace's blob storage). ``refused`` keeps what the gateway turned away, so a test can show
that nbmill asked for nothing Azure ML lacks.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.azureml_runtime import uv
from tests.conftest import ROOT

LOGGED_MODELS = "/api/2.0/mlflow/logged-models"
ALIASES = "/api/2.0/mlflow/registered-models/alias"
MODEL_TAGS = (
    "/api/2.0/mlflow/registered-models/set-tag",
    "/api/2.0/mlflow/registered-models/delete-tag",
)
SEARCHES = ("/api/2.0/mlflow/model-versions/search", "/api/2.0/mlflow/registered-models/search")
TAG_FILTER = re.compile(r"\btags\.", re.IGNORECASE)


def mlflow_version() -> str:
    lock = (ROOT / "uv.lock").read_text()
    return re.search(r'name = "mlflow-skinny"\nversion = "([^"]+)"', lock).group(1)


def refusal(method: str, path: str, body: bytes) -> tuple[int, str] | None:
    """(status, why) when Azure ML's tracking service would not answer this request."""
    route, _, query = path.partition("?")
    if route.startswith(LOGGED_MODELS):
        return 404, "MLflow 3 logged models are not implemented by Azure ML"
    if route.startswith(ALIASES):
        return 404, "registered-model aliases are not implemented by Azure ML"
    if route in MODEL_TAGS:
        return 404, "registered-model tags are not implemented by Azure ML"
    if route in SEARCHES:
        text = urllib.parse.unquote_plus(query)
        if body:
            text += json.dumps(json.loads(body or b"{}").get("filter", ""))
        if TAG_FILTER.search(text):
            return 400, "Azure ML searches models by name only, not by tag"
    return None


class AzureMLflow:
    """The server and its gateway; ``uri`` is what MLFLOW_TRACKING_URI is set to."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.refused: list[str] = []
        self._log = tempfile.NamedTemporaryFile(prefix="mlflow-server-", suffix=".log")
        backend = free_port()
        self._server = subprocess.Popen(
            [
                uv(), "tool", "run", "-q", "--python", sys.executable,
                "--from", f"mlflow=={mlflow_version()}", "mlflow", "server",
                "--host", "127.0.0.1", "--port", str(backend), "--workers", "1",
                "--backend-store-uri", f"sqlite:///{self.folder / 'mlflow.db'}",
                "--artifacts-destination", str(self.folder / "artifacts"),
            ],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "MLFLOW_TRACKING_URI": ""},
        )  # fmt: skip
        self.backend = f"127.0.0.1:{backend}"
        self._gateway = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self._gateway.serve_forever, daemon=True).start()
        self.uri = f"http://127.0.0.1:{self._gateway.server_address[1]}"
        self._wait()

    def _wait(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._server.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {self.output()}")
            try:
                with urllib.request.urlopen(f"http://{self.backend}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"mlflow server not ready in {timeout} s: {self.output()}")

    def output(self) -> str:
        return Path(self._log.name).read_text(errors="replace")[-3000:]

    def _handler(self):
        owner = self

        class Gateway(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                refused = refusal(self.command, self.path, body)
                if refused:
                    status, why = refused
                    owner.refused.append(f"{self.command} {self.path}: {why}")
                    code = "ENDPOINT_NOT_FOUND" if status == 404 else "INVALID_PARAMETER_VALUE"
                    payload = json.dumps({"error_code": code, "message": why}).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                upstream = http.client.HTTPConnection(owner.backend, timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                upstream.request(self.command, self.path, body=body or None, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

            def log_message(self, *args):
                pass

        return Gateway

    def close(self) -> None:
        self._gateway.shutdown()
        self._gateway.server_close()
        try:
            os.killpg(self._server.pid, 15)
        except ProcessLookupError:
            pass
        self._server.wait(timeout=30)
        self._log.close()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
