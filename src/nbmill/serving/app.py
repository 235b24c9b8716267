"""The scoring service as a plain ASGI application (no framework on the hot path).

``POST /score`` (key auth like Azure ML endpoints: ``Authorization: Bearer KEY``), ``GET
/health``, ``GET /metrics``. Each request is parsed and checked (request.py), scored in a batch
with the requests that arrived with it (batching.py), counted (metrics.py) and collected
(collect.py).

When the model itself fails, the client gets a generic 500 naming its request id, never the
exception's text (which can show the model's internals or the data of other requests scored in
the same batch). The detail goes to the server's log and to the collected record, both the
operator's, under the same request id.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from nbmill.serving.collect import Collector, Scored
from nbmill.serving.follow import Follower, Move, Served, Switched
from nbmill.serving.metrics import CONTENT_TYPE, Metrics
from nbmill.serving.request import InputError, Signature, parse_request

MAX_BYTES = 1 << 20
DRAIN_BYTES = 64 << 20  # the rest of an oversized body is read and dropped, up to this
DRAIN_S = 10.0  # and for at most this long
REQUEST_ID_HEADERS = (b"x-request-id", b"x-ms-client-request-id")
VERSION_HEADER = b"x-nbmill-model-version"  # on every /score answer: the version that answered
log = logging.getLogger(__name__)


def _prediction_json(values: np.ndarray) -> bytes:
    flat = values[:, 0] if values.shape[1] == 1 else values
    return b'{"predictions":' + json.dumps(flat.tolist()).encode() + b"}"


class ScoringApp:
    """A plain ASGI application (no framework on the hot path).

    It answers with one model version (``served``), or, given a ``follower``, with whichever
    version the followed alias points at (follow.py). Every answer names its version in the
    ``x-nbmill-model-version`` header."""

    def __init__(
        self,
        model,
        signature: Signature,
        key: str,
        collector: Collector | None,
        identity: dict[str, Any],
        max_bytes: int = MAX_BYTES,
        follow: Callable[[Served, Switched], Follower] | None = None,
        on_shutdown: Callable[[], None] = lambda: None,
    ):
        self.key = key.encode()
        self.collector = collector
        self.max_bytes = max_bytes
        self.metrics = Metrics()
        self.on_shutdown = on_shutdown
        if collector is not None:  # counted by the worker whose collector it is
            collector.on_error = self.metrics.collect_errors.inc
            collector.on_drop = self.metrics.collect_dropped.inc
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        self.served = Served(model, signature, identity.get("version"), identity.get("sha256")
                             or "", identity)  # fmt: skip
        self.metrics.serving(self.served.version, self.served.sha256)
        self.follower = follow(self.served, self.switched) if follow else None
        self.health = json.dumps({"status": "ok", **identity}).encode()

    @property
    def signature(self) -> Signature:
        return self.served.signature

    def switched(self, old: Served, new: Served, move: Move) -> None:
        """A followed alias moved and ``new`` answers from now on."""
        self.served = new
        self.metrics.serving(new.version, new.sha256, old.version)

    def _answering(self) -> Served:
        return self.served if self.follower is None else self.follower.served

    def _health(self) -> bytes:
        if self.follower is None:
            return self.health
        served = self.follower.served
        return json.dumps({"status": "ok", **served.identity, **self.follower.state()}).encode()

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
            await _respond_bytes(send, 200, self._health(), b"application/json",
                                 version=self._answering().header)  # fmt: skip
        elif path == "/metrics" and method == "GET":
            await _respond_bytes(send, 200, self.metrics.render(), CONTENT_TYPE,
                                 version=self._answering().header)  # fmt: skip
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
                self.on_shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _score(self, scope, receive, send) -> None:
        began = time.perf_counter()
        status, answer, unread = 200, b"", 0
        matrix = values = error = sent = None
        correlation_id = _correlation_id(scope["headers"])
        served = self.served
        try:
            self._check_key(scope)
            body = await self._read_body(scope, receive)
            if self.follower is not None:  # the version the alias points at, once loaded
                served = self.follower.now() or await self.follower.next()
            matrix = parse_request(body, served.signature)
            values = await served.batcher.score(matrix)
            if self.follower is not None:
                self.follower.sample = matrix
            answer = _prediction_json(values)
        except InputError as exc:
            status, error, sent, unread = exc.status, str(exc), exc.sent, exc.unread
            answer = json.dumps({"error": error}).encode()
        except Exception as exc:  # a model failure: the service stays up
            status = 500
            error = f"scoring failed: {type(exc).__name__}: {exc}"
            log.error("request %s: %s", correlation_id, error, exc_info=exc)
            answer = _failed_answer(correlation_id)
        version = served.header
        if unread:  # answer at once, then read the rest, so the client is not reset mid-send
            await _respond_bytes(send, status, answer, b"application/json", correlation_id, True,
                                 version)  # fmt: skip
            await _drain(receive, unread)
            await send({"type": "http.response.body", "body": b""})
        else:
            await _respond_bytes(send, status, answer, b"application/json", correlation_id,
                                 version=version)  # fmt: skip
        seconds = time.perf_counter() - began
        self.metrics.observe(status, seconds, len(matrix) if status == 200 else 0)
        if self.collector is not None and status != 401:  # unauthenticated bodies are not kept
            self.collector.add(
                Scored(
                    time.time(),
                    status,
                    seconds,
                    correlation_id,
                    matrix if status == 200 else None,
                    values if status == 200 else None,
                    error,
                    sent,
                    served.version,
                )
            )

    def _check_key(self, scope) -> None:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key):
                    return
                raise InputError("invalid key: send Authorization: Bearer <key>", status=401)
        raise InputError("missing key: send Authorization: Bearer <key>", status=401)

    async def _read_body(self, scope, receive) -> bytes:
        """The body, or a 413 as soon as it is known to be past the limit. Unless the client
        asked ``Expect: 100-continue`` (it then sends no body), the 413 goes out at once and
        the rest of the body is then read and dropped (``_drain``), so that a client still
        sending is not reset before it reads its answer."""
        length, expect = None, False
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit():
                length = int(value)
            elif name == b"expect":
                expect = value.lower() == b"100-continue"
        if length is not None and length > self.max_bytes:
            raise _too_large(f"body of {length} bytes", self.max_bytes, 0 if expect else 1)
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                unread = size if message.get("more_body") else 0
                raise _too_large("body", self.max_bytes, unread)
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)


def _failed_answer(correlation_id: str) -> bytes:
    """What a client is told when the model failed: no detail, only where to find it."""
    message = f"scoring failed (request id {correlation_id}); the server log has why"
    return json.dumps({"error": message}).encode()


def _too_large(what: str, limit: int, unread: int) -> InputError:
    error = InputError(f"{what} is more than the limit of {limit} bytes", status=413)
    error.unread = unread  # > 0: the client may still be sending
    return error


async def _drain(receive, size: int) -> None:
    """Read and drop the rest of a body: up to DRAIN_BYTES, for up to DRAIN_S, or until the
    client is done or gone."""
    deadline = asyncio.get_running_loop().time() + DRAIN_S
    while size <= DRAIN_BYTES:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            return
        try:
            message = await asyncio.wait_for(receive(), left)
        except TimeoutError:
            return
        if message["type"] != "http.request":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            return


def _correlation_id(headers) -> str:
    """The client's request id (``x-request-id`` or ``x-ms-client-request-id``) when it is a
    sane token, else a new one: it ties the collected inputs, outputs and the answer."""
    for name, value in headers:
        if name in REQUEST_ID_HEADERS and 0 < len(value) <= 128:
            text = value.decode("latin-1")
            if text.isprintable() and '"' not in text and "\\" not in text:
                return text
    return str(uuid.uuid4())


async def _respond(send, status: int, payload: dict) -> None:
    await _respond_bytes(send, status, json.dumps(payload).encode(), b"application/json")


async def _respond_bytes(
    send,
    status: int,
    body: bytes,
    content_type: bytes,
    request_id: str | None = None,
    more: bool = False,
    version: bytes | None = None,
) -> None:
    """The response; with ``more`` it is not complete yet (and the connection closes after)."""
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if request_id is not None:
        headers.append((b"x-request-id", request_id.encode("latin-1")))
    if version is not None:
        headers.append((VERSION_HEADER, version))
    if more:
        headers.append((b"connection", b"close"))
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": more})
