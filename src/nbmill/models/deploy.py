"""Deploy a packaged model to a target after a smoke test over real HTTP (imports MLflow).

``deploy_local``: start ``nbmill serve`` on a free port, score held-out rows, compare with the
in-process model's predictions, stop it. Only if that passes is ``deployments/local.json``
replaced and ``nbmill.model.deployed`` emitted; a failed smoke test leaves the previous
deployment as it was and raises.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np

from nbmill import tracking
from nbmill._fs import write_json
from nbmill._net import free_port
from nbmill._time import iso, utcnow
from nbmill.errors import NbmillError
from nbmill.models import package
from nbmill.models.gate import PRODUCTION, STAGING
from nbmill.models.registry import find_candidate
from nbmill.models.store import TAG_GATE_REASON
from nbmill.records.provenance import who

START_TIMEOUT_S = 120
TOLERANCE = 1e-9


def _request(url: str, body: bytes | None = None, key: str | None = None, timeout: float = 10):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        url, data=body, headers=headers, method="POST" if body is not None else "GET"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, response.read()


class Service:
    """``nbmill serve`` for a package, started in a child process on a free 127.0.0.1 port.

    Its output (stdout and stderr together) goes to a file, ``log`` or else a temporary one
    removed by ``stop``, never to a pipe: a pipe nobody reads fills up (64 KiB on Linux) and
    then blocks a chatty service in the middle of a write. This process keeps no handle on
    that file; ``output`` opens it to read, with an offset of its own."""

    def __init__(
        self,
        package_dir: Path | str,
        cwd: Path | None = None,
        collect_dir: Path | None = None,
        workers: int = 1,
        log: Path | None = None,
    ):
        self.port, self.key = free_port(), secrets.token_urlsafe(24)
        self.base = f"http://127.0.0.1:{self.port}"
        self.log, self._temporary_log = (Path(log), False) if log else (_temporary_log(), True)
        collect = ["--collect-dir", str(collect_dir)] if collect_dir else ["--no-collect"]
        command = [sys.executable, "-m", "nbmill", "serve", str(package_dir)]
        command += ["--port", str(self.port), "--workers", str(workers), *collect]
        try:
            with open(self.log, "wb") as output:  # the child has its own handle on it
                self.process = subprocess.Popen(
                    command,
                    env={**os.environ, "NBMILL_SERVE_KEY": self.key},
                    cwd=cwd,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
        except BaseException:
            if self._temporary_log:
                self.log.unlink(missing_ok=True)
            raise

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise NbmillError(f"smoke test: the service did not start: {self.output()}")
            try:
                if _request(f"{self.base}/health", timeout=2)[0] == 200:
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise NbmillError(f"smoke test: no answer on {self.base}/health in {timeout}s")
            time.sleep(0.1)

    def score(self, columns: list[str], rows: list[list[float]]) -> tuple[np.ndarray, float]:
        body = json.dumps({"input_data": {"columns": columns, "data": rows}}).encode()
        began = time.perf_counter()
        try:
            _, answer = _request(f"{self.base}/score", body, self.key)
        except urllib.error.HTTPError as exc:
            raise NbmillError(
                f"smoke test: /score answered {exc.code}: {exc.read()[:300]!r}"
            ) from None
        latency_ms = (time.perf_counter() - began) * 1000
        return np.asarray(json.loads(answer)["predictions"], dtype=float), latency_ms

    def output(self, limit: int = 500) -> str:
        """The last ``limit`` characters the service wrote."""
        with open(self.log, "rb") as handle:
            handle.seek(max(0, os.fstat(handle.fileno()).st_size - limit * 4))  # UTF-8: 1-4 bytes
            return handle.read().decode("utf-8", "replace").strip()[-limit:]

    def stop(self) -> int:
        """SIGTERM, then the exit code (SIGKILL after 30 s); a temporary log is removed."""
        try:
            self.process.terminate()
            try:
                return self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                return self.process.wait()
        finally:
            if self._temporary_log:
                self.log.unlink(missing_ok=True)


def _temporary_log() -> Path:
    fd, path = tempfile.mkstemp(prefix="nbmill-serve-", suffix=".log")
    os.close(fd)
    return Path(path)


def smoke_test(
    package_dir: Path,
    columns: list[str],
    rows: list[list[float]],
    expected,
    cwd: Path | None = None,
) -> dict[str, Any]:
    """Serve the package on 127.0.0.1, score ``rows``, compare with ``expected``; stop it.

    ``expected`` may be a callable computing the predictions: it then runs while the service
    starts.
    """
    service = Service(package_dir, cwd)
    try:
        expected = np.asarray(expected() if callable(expected) else expected, dtype=float)
        service.wait_ready()
        served, latency_ms = service.score(columns, rows)
        if served.shape != expected.shape:
            raise NbmillError(f"smoke test: {served.shape} predictions, expected {expected.shape}")
        gap = float(np.max(np.abs(served - expected)))
        if not gap <= TOLERANCE:
            raise NbmillError(
                f"smoke test: served predictions differ by up to {gap:g} from the model's own"
            )
        return {"rows": len(rows), "max_abs_diff": gap, "latency_ms": round(latency_ms, 2)}
    finally:
        service.stop()


def deploy_local(
    package_dir: Path,
    deployments_dir: Path,
    columns: list[str],
    rows: list[list[float]],
    expected: np.ndarray,
    *,
    model: str,
    version: str | None,
    run_id: str,
    notifier=None,
    reason: str = "",
    cwd: Path | None = None,
) -> dict[str, Any]:
    """Smoke-test the package, then make it the local deployment and announce it."""
    package_dir = Path(package_dir).resolve()
    smoke = smoke_test(package_dir, columns, rows, expected, cwd=cwd)
    manifest = package.read_manifest(package_dir)
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
    target = Path(deployments_dir) / "local.json"
    previous = json.loads(target.read_text()) if target.exists() else None
    write_json(target, deployment)
    if notifier is not None:
        notifier.emit(
            "nbmill.model.deployed",
            f"models/{model}/{version}",
            {
                **{
                    k: deployment[k]
                    for k in ("target", "model", "version", "run_id", "who", "why", "model_sha256")
                },
                "previous_version": previous.get("version") if previous else None,
                "smoke_test": smoke,
            },
        )
    return deployment


def deploy_candidate(
    model_name: str,
    model_dir: Path,
    package_dir: Path,
    frame,
    columns: list[str],
    target: str = "local",
) -> dict[str, Any]:
    """The deploy step: package this run's model; if the gate promoted it, smoke-test and deploy.

    A candidate the gate did not promote is packaged but not deployed (the step still succeeds
    and says why); a failed smoke test raises, leaving the previous deployment in place.
    """
    ctx = tracking.context()
    candidate = find_candidate(model_name, model_dir)
    version = str(candidate.version)
    package.package_model(
        model_dir,
        package_dir,
        ctx.project_dir / "environment.yml",
        target,
        model={"name": model_name, "version": version},
    )
    if not {STAGING, PRODUCTION} & set(candidate.aliases or ()):
        tracking.log_metrics({"deployed": 0})
        gate = (candidate.tags or {}).get(TAG_GATE_REASON)
        return {
            "deployed": False,
            "model": model_name,
            "version": version,
            "why": f"not promoted by the gate: {gate or 'no decision recorded'}",
        }
    features = frame[columns]

    def expected():  # the model's own predictions, computed while the service starts
        return mlflow.pyfunc.load_model(str(model_dir)).predict(features)

    with tracking.emitter(ctx.project_dir) as notifier:
        deployment = deploy_local(
            package_dir,
            tracking.runs_dir(ctx.project_dir) / "deployments",
            columns,
            features.values.tolist(),
            expected,
            model=model_name,
            version=version,
            run_id=ctx.run_id,
            notifier=notifier,
            reason=tracking.run_json(ctx).get("why", ""),
            cwd=ctx.project_dir,
        )
    smoke = deployment["smoke_test"]
    # The smoke test's latency stays in the deployment record: a timing is not a result, and
    # a reproduction of the run must match every metric.
    tracking.log_metrics(
        {"deployed": 1, "smoke_rows": smoke["rows"], "smoke_max_abs_diff": smoke["max_abs_diff"]}
    )
    return {"deployed": True, **deployment}
