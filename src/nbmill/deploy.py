"""Deploy a packaged model to a target after a smoke test over real HTTP.

``deploy_local``: start ``nbmill serve`` on a free port, score held-out rows, compare with the
in-process model's predictions, stop it. Only if that passes is ``deployments/local.json``
replaced and ``nbmill.model.deployed`` emitted; a failed smoke test leaves the previous
deployment as it was and raises.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from nbmill.errors import NbmillError
from nbmill.record import iso, utcnow, who, write_atomic

START_TIMEOUT_S = 120
TOLERANCE = 1e-9


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(url: str, body: bytes | None = None, key: str | None = None, timeout: float = 10):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        url, data=body, headers=headers, method="POST" if body is not None else "GET"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, response.read()


def smoke_test(
    package_dir: Path,
    columns: list[str],
    rows: list[list[float]],
    expected: np.ndarray,
    cwd: Path | None = None,
) -> dict[str, Any]:
    """Serve the package on 127.0.0.1, score ``rows``, compare with ``expected``; stop it."""
    port, key = free_port(), secrets.token_urlsafe(24)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nbmill",
            "serve",
            str(package_dir),
            "--port",
            str(port),
            "--no-collect",
        ],
        env={**os.environ, "NBMILL_SERVE_KEY": key},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if server.poll() is not None:
                raise NbmillError(
                    f"smoke test: the service did not start: {server.stderr.read().strip()[-500:]}"
                )
            try:
                if _request(f"{base}/health", timeout=2)[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise NbmillError(f"smoke test: no answer on {base}/health in {START_TIMEOUT_S}s")
            time.sleep(0.2)
        body = json.dumps({"input_data": {"columns": columns, "data": rows}}).encode()
        began = time.perf_counter()
        try:
            status, answer = _request(f"{base}/score", body, key)
        except urllib.error.HTTPError as exc:
            raise NbmillError(
                f"smoke test: /score answered {exc.code}: {exc.read()[:300]!r}"
            ) from None
        latency_ms = (time.perf_counter() - began) * 1000
        served = np.asarray(json.loads(answer)["predictions"], dtype=float)
        if served.shape != np.asarray(expected).shape:
            raise NbmillError(
                f"smoke test: {served.shape} predictions, expected {np.asarray(expected).shape}"
            )
        gap = float(np.max(np.abs(served - expected)))
        if not gap <= TOLERANCE:
            raise NbmillError(
                f"smoke test: served predictions differ by up to {gap:g} from the model's own"
            )
        return {
            "rows": len(rows),
            "max_abs_diff": gap,
            "latency_ms": round(latency_ms, 2),
            "status": status,
        }
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()


def deploy_local(
    package_dir: Path,
    project_dir: Path,
    columns: list[str],
    rows: list[list[float]],
    expected: np.ndarray,
    *,
    model: str,
    version: str | None,
    run_id: str,
    notifier=None,
    reason: str = "",
) -> dict[str, Any]:
    """Smoke-test the package, then make it the local deployment and announce it."""
    package_dir = Path(package_dir).resolve()
    smoke = smoke_test(package_dir, columns, rows, expected, cwd=project_dir)
    manifest = json.loads((package_dir / "package.json").read_text(encoding="utf-8"))
    deployment = {
        "target": "local",
        "model": model,
        "version": version,
        "run_id": run_id,
        "package": str(package_dir),
        "model_sha256": manifest["model_sha256"],
        "deployed_at": iso(utcnow()),
        "who": who(),
        "why": reason,
        "smoke_test": smoke,
        "serve": f"nbmill serve {package_dir}",
    }
    target = Path(project_dir) / "deployments" / "local.json"
    previous = json.loads(target.read_text()) if target.exists() else None
    write_atomic(target, json.dumps(deployment, indent=2) + "\n")
    if notifier is not None:
        notifier.emit(
            "nbmill.model.deployed",
            f"models/{model}/{version}",
            {
                **{
                    k: deployment[k]
                    for k in ("target", "model", "version", "run_id", "who", "why", "model_sha256")
                },
                "alias": None,
                "previous_version": previous.get("version") if previous else None,
                "smoke_test": smoke,
            },
        )
    return deployment
