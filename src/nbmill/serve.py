"""The scoring service: ``POST /score``, ``GET /health``, ``GET /metrics`` on 127.0.0.1.

- Requests: Azure ML's shape for MLflow models ``{"input_data": {"columns": [...], "data":
  [[...]]}}``, MLflow's ``dataframe_split`` / ``dataframe_records``, or a plain list of records.
  Answer: ``{"predictions": [...]}``.
- Key auth like Azure ML endpoints: ``Authorization: Bearer KEY`` on /score.
- Inputs are checked against the model signature; every problem is a 4xx naming it.
- Requests that arrive together are scored in one ``predict`` call (the model runs once per turn
  of the event loop, not once per request).
- Every request's inputs, outputs, latency and status are collected to JSON-lines files by a
  background thread (see collect.py), flushed on shutdown (SIGTERM included).
- The model's files are checked against their recorded sha256 before loading.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import os
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from nbmill.collect import Collector
from nbmill.errors import NbmillError

MAX_BYTES = 1 << 20
MAX_ROWS = 10_000
NUMERIC = {"double": float, "float": float, "long": int, "integer": int}
BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
ENV_CONFIG = "NBMILL_SERVE_CONFIG"


class InputError(Exception):
    """A request the client must fix: answered with ``status`` and this message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Signature:
    columns: tuple[str, ...]
    types: tuple[str, ...]

    @classmethod
    def from_mlmodel(cls, model_dir: Path) -> Signature:
        mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text(encoding="utf-8"))
        inputs = (mlmodel.get("signature") or {}).get("inputs")
        if not inputs:
            raise NbmillError(f"{model_dir}: the model has no input signature; log it with one")
        spec = json.loads(inputs)
        if any("name" not in col for col in spec):
            raise NbmillError(f"{model_dir}: only column-based signatures can be served")
        types = tuple(col.get("type", "") for col in spec)
        unsupported = sorted({t for t in types if t not in NUMERIC})
        if unsupported:
            raise NbmillError(f"{model_dir}: column types {unsupported} are not served yet")
        return cls(tuple(col["name"] for col in spec), types)


def _cell_error(value: Any, kind: str) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"expected a number ({kind}), got {type(value).__name__} {value!r}"[:200]
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not allowed"
    if kind in ("long", "integer") and isinstance(value, float) and not value.is_integer():
        return f"expected a whole number ({kind}), got {value!r}"
    return None


def parse_request(body: bytes, signature: Signature, max_rows: int = MAX_ROWS) -> np.ndarray:
    """The request's rows as a float matrix in signature order, or InputError naming the problem."""
    if not body.strip():
        raise InputError(
            'empty body: send JSON such as {"input_data": {"columns": [...], "data": [[...]]}}'
        )
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"malformed JSON: {exc}") from None
    columns, rows = _columns_and_rows(payload, signature)
    if not rows:
        raise InputError("no rows to score")
    if len(rows) > max_rows:
        raise InputError(f"{len(rows)} rows is more than the limit of {max_rows}", status=413)
    wanted = signature.columns
    missing = [c for c in wanted if c not in columns]
    extra = [c for c in columns if c not in wanted]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing columns: {', '.join(missing)}")
        if extra:
            parts.append(f"unexpected columns: {', '.join(map(str, extra))}")
        raise InputError("; ".join(parts) + f" (the model takes: {', '.join(wanted)})")
    if len(set(columns)) != len(columns):
        raise InputError("a column is named twice")
    width = len(columns)
    clean = all(
        isinstance(row, list)
        and len(row) == width
        and all(type(v) is float or type(v) is int for v in row)
        for row in rows
    )
    if clean:
        matrix = np.array(rows, dtype=np.float64)
        if np.isfinite(matrix).all() and not _has_fractional_long(matrix, columns, signature):
            return _in_order(matrix, columns, wanted)
    _raise_first_bad_cell(rows, columns, signature)
    raise InputError("could not read the rows")  # unreachable when a bad cell exists


def _columns_and_rows(payload: Any, signature: Signature) -> tuple[list[str], list[Any]]:
    if isinstance(payload, dict):
        for key in ("input_data", "dataframe_split"):
            if key in payload:
                split = payload[key]
                if not isinstance(split, dict) or "data" not in split:
                    raise InputError(f"'{key}' must hold 'columns' and 'data'")
                columns = split.get("columns", list(signature.columns))
                if not isinstance(columns, list) or not isinstance(split["data"], list):
                    raise InputError(f"'{key}.columns' and '{key}.data' must be lists")
                return [str(c) for c in columns], split["data"]
        if "dataframe_records" in payload:
            payload = payload["dataframe_records"]
        else:
            raise InputError(
                "unknown request shape: expected 'input_data', 'dataframe_split', "
                "'dataframe_records' or a list of records"
            )
    if isinstance(payload, list):
        if not payload:
            return list(signature.columns), []
        if not all(isinstance(r, dict) for r in payload):
            raise InputError("a list body must hold records: objects mapping column to value")
        columns = list(payload[0])
        for index, record in enumerate(payload):
            if list(record) != columns and set(record) != set(columns):
                raise InputError(f"record {index} has different columns from record 0")
        return columns, [[record[c] for c in columns] for record in payload]
    raise InputError("the body must be a JSON object or a list of records")


def _has_fractional_long(matrix: np.ndarray, columns: list[str], signature: Signature) -> bool:
    kinds = dict(zip(signature.columns, signature.types, strict=True))
    longs = [i for i, c in enumerate(columns) if kinds[c] in ("long", "integer")]
    return bool(longs) and not np.all(np.mod(matrix[:, longs], 1) == 0)


def _in_order(matrix: np.ndarray, columns: list[str], wanted: tuple[str, ...]) -> np.ndarray:
    if tuple(columns) == wanted:
        return matrix
    index = {c: i for i, c in enumerate(columns)}
    return matrix[:, [index[c] for c in wanted]]


def _raise_first_bad_cell(rows: list[Any], columns: list[str], signature: Signature) -> None:
    kinds = dict(zip(signature.columns, signature.types, strict=True))
    for r, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(columns):
            size = len(row) if isinstance(row, list) else type(row).__name__
            raise InputError(f"row {r}: expected {len(columns)} values, got {size}")
        for column, value in zip(columns, row, strict=True):
            problem = _cell_error(value, kinds[column])
            if problem:
                raise InputError(f"row {r}, column '{column}': {problem}")


class Metrics:
    """Counters and a latency histogram, rendered in Prometheus' text format."""

    def __init__(self) -> None:
        self.requests: dict[int, int] = {}
        self.rows = 0
        self.buckets = [0] * (len(BUCKETS_S) + 1)
        self.latency_sum = 0.0

    def observe(self, status: int, seconds: float, rows: int) -> None:
        self.requests[status] = self.requests.get(status, 0) + 1
        self.rows += rows
        self.latency_sum += seconds
        for i, bound in enumerate(BUCKETS_S):
            if seconds <= bound:
                self.buckets[i] += 1
                break
        else:
            self.buckets[-1] += 1

    def render(self) -> str:
        total = sum(self.requests.values())
        errors = sum(n for status, n in self.requests.items() if status >= 400)
        lines = [
            "# HELP nbmill_requests_total Scoring requests by HTTP status.",
            "# TYPE nbmill_requests_total counter",
            *(
                f'nbmill_requests_total{{status="{s}"}} {n}'
                for s, n in sorted(self.requests.items())
            ),
            "# HELP nbmill_request_errors_total Scoring requests answered with 4xx or 5xx.",
            "# TYPE nbmill_request_errors_total counter",
            f"nbmill_request_errors_total {errors}",
            "# HELP nbmill_rows_scored_total Rows scored.",
            "# TYPE nbmill_rows_scored_total counter",
            f"nbmill_rows_scored_total {self.rows}",
            "# HELP nbmill_request_latency_seconds Time from request to response.",
            "# TYPE nbmill_request_latency_seconds histogram",
        ]
        cumulative = 0
        for bound, count in zip((*BUCKETS_S, math.inf), self.buckets, strict=True):
            cumulative += count
            le = "+Inf" if bound == math.inf else f"{bound:g}"
            lines.append(f'nbmill_request_latency_seconds_bucket{{le="{le}"}} {cumulative}')
        lines += [
            f"nbmill_request_latency_seconds_sum {self.latency_sum:.6f}",
            f"nbmill_request_latency_seconds_count {total}",
        ]
        return "\n".join(lines) + "\n"


class Batcher:
    """Scores every request that arrived in one turn of the event loop with one predict call."""

    def __init__(self, predict: Callable[[np.ndarray], np.ndarray]):
        self.predict = predict
        self.pending: list[tuple[np.ndarray, asyncio.Future]] = []

    def score(self, matrix: np.ndarray) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self.pending:
            loop.call_soon(self._flush)
        self.pending.append((matrix, future))
        return future

    def _flush(self) -> None:
        batch, self.pending = self.pending, []
        try:
            stacked = batch[0][0] if len(batch) == 1 else np.vstack([m for m, _ in batch])
            predictions = np.asarray(self.predict(stacked)).reshape(len(stacked), -1)
        except Exception as exc:  # the model failed: every request in the batch gets a 500
            for _, future in batch:
                future.set_exception(exc)
            return
        start = 0
        for matrix, future in batch:
            end = start + len(matrix)
            future.set_result(predictions[start:end])
            start = end


def _prediction_json(values: np.ndarray) -> bytes:
    flat = values[:, 0] if values.shape[1] == 1 else values
    return b'{"predictions":' + json.dumps(flat.tolist()).encode() + b"}"


class ScoringApp:
    """A plain ASGI application (no framework on the hot path)."""

    def __init__(
        self,
        model,
        signature: Signature,
        key: str,
        collector: Collector | None,
        identity: dict[str, Any],
        max_bytes: int = MAX_BYTES,
    ):
        self.signature = signature
        self.key = key.encode()
        self.collector = collector
        self.identity = identity
        self.max_bytes = max_bytes
        self.metrics = Metrics()
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        self.batcher = Batcher(model.predict)
        self.health = json.dumps({"status": "ok", **identity}).encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path == "/score":
            if method != "POST":
                await _respond(send, 405, {"error": "use POST /score"})
                return
            await self._score(scope, receive, send)
        elif path == "/health" and method == "GET":
            await _respond_bytes(send, 200, self.health, b"application/json")
        elif path == "/metrics" and method == "GET":
            await _respond_bytes(
                send, 200, self.metrics.render().encode(), b"text/plain; version=0.0.4"
            )
        else:
            await _respond(send, 404, {"error": f"no {method} {path}: try POST /score"})

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.collector is not None:
                    self.collector.close()  # nothing collected is lost on SIGTERM
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _score(self, scope, receive, send) -> None:
        began = time.perf_counter()
        status, body, rows, answer = 200, b"", 0, b""
        try:
            self._check_key(scope)
            body = await self._read_body(scope, receive)
            matrix = parse_request(body, self.signature)
            rows = len(matrix)
            answer = _prediction_json(await self.batcher.score(matrix))
        except InputError as exc:
            status, answer = exc.status, json.dumps({"error": str(exc)}).encode()
        except Exception as exc:  # a model failure: the service stays up
            status = 500
            answer = json.dumps({"error": f"scoring failed: {type(exc).__name__}: {exc}"}).encode()
        await _respond_bytes(send, status, answer, b"application/json")
        seconds = time.perf_counter() - began
        self.metrics.observe(status, seconds, rows if status == 200 else 0)
        if self.collector is not None and status != 401:
            self.collector.add(status, seconds, body if status != 413 else b"", answer)

    def _check_key(self, scope) -> None:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key):
                    return
                raise InputError("invalid key: send Authorization: Bearer <key>", status=401)
        raise InputError("missing key: send Authorization: Bearer <key>", status=401)

    async def _read_body(self, scope, receive) -> bytes:
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                raise InputError(
                    f"body of {int(value)} bytes is more than the limit of {self.max_bytes}",
                    status=413,
                )
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise InputError(f"body is more than the limit of {self.max_bytes} bytes", 413)
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)


async def _respond(send, status: int, payload: dict) -> None:
    await _respond_bytes(send, status, json.dumps(payload).encode(), b"application/json")


async def _respond_bytes(send, status: int, body: bytes, content_type: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# --- start-up: resolve, verify and load the model, then run uvicorn ------------------------


@dataclass(frozen=True)
class ServeConfig:
    model_dir: str
    expected_sha256: str | None
    identity: dict[str, Any]
    key: str
    collect_dir: str | None


def resolve_model(ref: str, project_dir: Path) -> tuple[Path, str | None, dict[str, Any]]:
    """A local model or package folder, or NAME@ALIAS / NAME/VERSION from the MLflow registry:
    returns (model folder, the sha256 it must have, identity for /health)."""
    from nbmill.package import MANIFEST, verify_package

    path = Path(ref)
    if path.is_dir():
        if (path / MANIFEST).exists():  # a package made by the deploy step
            verify_package(path)
            manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
            return path / "model", manifest.get("model_sha256"), {"model": str(path)}
        if (path / "MLmodel").exists():
            return path, None, {"model": str(path)}
        raise NbmillError(f"{path}: neither a package (package.json) nor an MLflow model (MLmodel)")
    from nbmill.registry import resolve_registered  # imports MLflow: registry refs only

    return resolve_registered(ref, project_dir)


def check_model(model_dir: Path, expected: str | None) -> str:
    from nbmill.record import tree_digest

    actual = tree_digest(model_dir)
    if expected is not None and actual != expected:
        raise NbmillError(
            f"{model_dir}: the model's files have sha256 {actual[:16]}…, but {expected[:16]}… "
            "was recorded when it was registered; refusing to serve a model that changed"
        )
    return actual


def load_key(project_dir: Path) -> tuple[str, str]:
    """The key from NBMILL_SERVE_KEY, else from (or generated into) .nbmill/serve.key."""
    key = os.environ.get("NBMILL_SERVE_KEY")
    if key:
        return key, "NBMILL_SERVE_KEY"
    path = project_dir / ".nbmill" / "serve.key"
    if not path.exists():
        import secrets

        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text(encoding="utf-8").strip(), str(path)


def create_app() -> ScoringApp:
    """Build the app in a worker process from the config the parent put in the environment."""
    import mlflow.pyfunc

    config = ServeConfig(**json.loads(os.environ[ENV_CONFIG]))
    model_dir = Path(config.model_dir)
    check_model(model_dir, config.expected_sha256)
    model = _load(model_dir, mlflow.pyfunc)
    collector = None
    if config.collect_dir:
        collector = Collector(
            Path(config.collect_dir), prefix=f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
        )
    return ScoringApp(
        model, Signature.from_mlmodel(model_dir), config.key, collector, config.identity
    )


def _load(model_dir: Path, pyfunc):
    """The raw sklearn model when there is one (fast, numeric matrices), else the pyfunc."""
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text(encoding="utf-8"))
    if "sklearn" in mlmodel.get("flavors", {}):
        import mlflow.sklearn

        return mlflow.sklearn.load_model(str(model_dir))
    model = pyfunc.load_model(str(model_dir))
    columns = Signature.from_mlmodel(model_dir).columns

    class Frame:
        def predict(self, matrix):
            import pandas as pd

            return np.asarray(model.predict(pd.DataFrame(matrix, columns=list(columns))))

    return Frame()


def serve(
    ref: str,
    project_dir: Path,
    host: str = "127.0.0.1",
    port: int = 5001,
    workers: int = 1,
    collect_dir: Path | None = None,
    announce: Callable[[str], None] = print,
) -> None:
    """Check the model, then run the service until SIGTERM or Ctrl-C."""
    import uvicorn

    model_dir, expected, identity = resolve_model(ref, project_dir)
    digest = check_model(model_dir, expected)
    Signature.from_mlmodel(model_dir)  # fail here, not in each worker, on a bad signature
    key, key_source = load_key(project_dir)
    identity = {**identity, "sha256": digest}
    config = ServeConfig(
        str(model_dir.resolve()),
        expected or digest,
        identity,
        key,
        str(collect_dir) if collect_dir else None,
    )
    os.environ[ENV_CONFIG] = json.dumps(config.__dict__)
    announce(f"serving {identity.get('model')} (sha256 {digest[:12]}) on http://{host}:{port}")
    announce(f"key: from {key_source}; collecting to {collect_dir or 'nowhere'}")
    uvicorn.run(
        "nbmill.serve:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
