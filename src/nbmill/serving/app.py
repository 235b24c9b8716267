"""The scoring service as a plain ASGI application (no framework on the hot path).

``POST /score`` (key auth like Azure ML endpoints: ``Authorization: Bearer KEY``), ``GET
/health``, ``GET /metrics``. Each request is parsed and checked (request.py), scored in a batch
with the requests that arrived with it (batching.py), counted (metrics.py) and collected
(collect.py).
"""

from __future__ import annotations

import hmac
import json
import time
import warnings
from typing import Any

import numpy as np

from nbmill.serving.batching import Batcher
from nbmill.serving.collect import Collector
from nbmill.serving.metrics import CONTENT_TYPE, Metrics
from nbmill.serving.request import InputError, Signature, parse_request

MAX_BYTES = 1 << 20


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
        if collector is not None:  # counted by the worker whose collector it is
            collector.on_error = self.metrics.collect_errors.inc
            collector.on_drop = self.metrics.collect_dropped.inc
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
            await _respond_bytes(send, 200, self.metrics.render(), CONTENT_TYPE)
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
