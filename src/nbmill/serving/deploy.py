"""Deploy a packaged model to a target after a smoke test over real HTTP (imports MLflow).

``deploy_local``: serve the package on a free port (the service ``nbmill serve`` runs, in this
process), score held-out rows, compare with the model's own predictions, stop it. Only if that
passes is ``deployments/local.json`` replaced and ``nbmill.model.deployed`` emitted; a failed
smoke test leaves the previous deployment as it was and raises.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np

from nbmill import tracking
from nbmill._fs import write_json
from nbmill._time import iso, utcnow
from nbmill.context import notifier as notifier_for
from nbmill.errors import NbmillError
from nbmill.models import package
from nbmill.models import store as st
from nbmill.models.gate import PRODUCTION, STAGING
from nbmill.models.registry import find_candidate
from nbmill.models.store import TAG_GATE_REASON
from nbmill.records.provenance import who
from nbmill.records.runjson import PACKAGE
from nbmill.serving.startup import serving_here

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


def smoke_test(
    package_dir: Path,
    columns: list[str],
    rows: list[list[float]],
    expected,
    cwd: Path | None = None,
) -> dict[str, Any]:
    """Serve the package on 127.0.0.1, score ``rows`` over HTTP, compare with ``expected``.

    The service is the one ``nbmill serve`` runs, with the same checks of the package's files
    (their sha256 against its manifest), signature and key, and the same app, started in this
    process (``serving_here``): the kernel already holds the model's libraries, which a new
    interpreter would spend 2-3 s importing. ``expected`` may be a callable computing the
    predictions."""

    expected = np.asarray(expected() if callable(expected) else expected, dtype=float)
    try:
        with serving_here(str(package_dir), Path(cwd or Path.cwd())) as (base, key):
            served, latency_ms = _score(base, key, columns, rows)
    except NbmillError as exc:
        raise NbmillError(f"smoke test: {exc}") from None
    if served.shape != expected.shape:
        raise NbmillError(f"smoke test: {served.shape} predictions, expected {expected.shape}")
    gap = float(np.max(np.abs(served - expected)))
    if not gap <= TOLERANCE:
        raise NbmillError(
            f"smoke test: served predictions differ by up to {gap:g} from the model's own"
        )
    return {"rows": len(rows), "max_abs_diff": gap, "latency_ms": round(latency_ms, 2)}


def _score(
    base: str, key: str, columns: list[str], rows: list[list[float]]
) -> tuple[np.ndarray, float]:
    body = json.dumps({"input_data": {"columns": columns, "data": rows}}).encode()
    began = time.perf_counter()
    try:
        _, answer = _request(f"{base}/score", body, key)
    except urllib.error.HTTPError as exc:
        raise NbmillError(f"/score answered {exc.code}: {exc.read()[:300]!r}") from None
    latency_ms = (time.perf_counter() - began) * 1000
    return np.asarray(json.loads(answer)["predictions"], dtype=float), latency_ms


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
    tracking.record_product(PACKAGE, package_dir)
    held = st.aliases_of_version(st.registered(st.Store.of(), model_name), version)
    if not {STAGING, PRODUCTION} & set(held):
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

    with notifier_for(ctx.project_dir) as notifier:
        deployment = deploy_local(
            package_dir,
            ctx.config().deployments_dir,
            columns,
            features.values.tolist(),
            expected,
            model=model_name,
            version=version,
            run_id=ctx.run_id,
            notifier=notifier,
            reason=ctx.record().get("why", ""),
            cwd=ctx.project_dir,
        )
    smoke = deployment["smoke_test"]
    # The smoke test's latency stays in the deployment record: a timing is not a result, and
    # a reproduction of the run must match every metric.
    tracking.log_metrics(
        {"deployed": 1, "smoke_rows": smoke["rows"], "smoke_max_abs_diff": smoke["max_abs_diff"]}
    )
    return {"deployed": True, **deployment}
