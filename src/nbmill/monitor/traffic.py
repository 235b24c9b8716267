"""Demo traffic for a running endpoint: held-out rows, sampled and optionally shifted, sent as
scoring requests, so that monitoring has a window to judge (and drift to find)."""

from __future__ import annotations

import http.client
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from nbmill._hashing import sha256_file
from nbmill.errors import NbmillError

HELD_OUT = "test_data"  # the pipeline output traffic samples by default


def parse_shifts(items: list[str], columns: list[str]) -> dict[str, float]:
    """``FEATURE=AMOUNT`` pairs: AMOUNT is added to every sent value of FEATURE."""
    shifts = {}
    for item in items:
        name, sep, amount = item.partition("=")
        if not sep:
            raise NbmillError(f"--shift {item!r}: expected FEATURE=AMOUNT, such as bmi=0.05")
        if name not in columns:
            raise NbmillError(f"--shift {item!r}: no feature '{name}' (features: {columns})")
        try:
            shifts[name] = float(amount)
        except ValueError:
            raise NbmillError(f"--shift {item!r}: {amount!r} is not a number") from None
    return shifts


def sample(
    frame: Any, columns: list[str], rows: int, shifts: dict[str, float], seed: int = 0
) -> np.ndarray:
    """``rows`` rows of ``frame[columns]``: each row once while there are enough, then drawn
    again at random; ``shifts`` added per column."""
    if rows < 1:
        raise NbmillError(f"--rows {rows}: give 1 or more")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise NbmillError(f"the held-out data has no columns {missing}")
    values = frame[columns].to_numpy(dtype=float)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(values))
    if rows > len(values):
        order = np.concatenate([order, rng.integers(0, len(values), rows - len(values))])
    matrix = values[order[:rows]].copy()
    for name, amount in shifts.items():
        matrix[:, columns.index(name)] += amount
    return matrix


def held_out(run_dir: Path, project_dir: Path, output: str = HELD_OUT) -> Path:
    """The held-out data file of the run that trained a model: its pipeline's output named
    ``output``, checked against the sha256 the run recorded."""
    from nbmill.project.spec import load_pipeline
    from nbmill.records.runjson import read

    record = read(run_dir)
    pipeline = load_pipeline(project_dir / record["pipeline"]["file"], project_dir)
    for step in pipeline.steps.values():
        rel = step.outputs.params.get(output)
        if rel is None:
            continue
        path = run_dir / rel
        expected = (record.get("files") or {}).get(rel)
        if not path.is_file():
            break
        if expected and sha256_file(path) != expected:
            raise NbmillError(f"{path}: changed since the run recorded it (sha256 differs)")
        return path
    raise NbmillError(
        f"{run_dir}: no held-out data (a pipeline output named '{output}'); pass --data FILE"
    )


def wait_ready(url: str, timeout: float = 30.0) -> None:
    """Wait until ``url``/health answers (a service started a moment ago is still loading)."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            if time.monotonic() > deadline:
                raise NbmillError(
                    f"{url}: no answer on /health in {timeout:.0f}s ({exc}); "
                    "start it with `nbmill serve NAME@ALIAS`"
                ) from None
            time.sleep(0.2)


def send(
    url: str,
    key: str,
    columns: list[str],
    matrix: np.ndarray,
    batch: int = 1,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """POST the rows to ``url``/score, ``batch`` rows a request, on one keep-alive connection."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NbmillError(f"--url {url!r}: expected http://HOST:PORT")
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = kind(parts.hostname, parts.port, timeout=timeout)
    path = parts.path.rstrip("/") + "/score" if not parts.path.endswith("/score") else parts.path
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    statuses: Counter = Counter()
    began = time.perf_counter()
    try:
        for start in range(0, len(matrix), batch):
            rows = matrix[start : start + batch].tolist()
            body = json.dumps({"input_data": {"columns": columns, "data": rows}})
            connection.request("POST", path, body, headers)
            response = connection.getresponse()
            response.read()
            statuses[response.status] += 1
    except (ConnectionError, OSError) as exc:
        raise NbmillError(f"{url}: {exc} (is `nbmill serve` running there?)") from None
    finally:
        connection.close()
    return {
        "requests": sum(statuses.values()),
        "rows": len(matrix),
        "statuses": dict(sorted(statuses.items())),
        "seconds": round(time.perf_counter() - began, 3),
    }
