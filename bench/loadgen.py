"""The benchmarks' load generator: an asyncio HTTP/1.1 client with one keep-alive connection
per concurrent client, and a constant server that measures the client's own ceiling."""

from __future__ import annotations

import asyncio
import math
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

HOST = "127.0.0.1"  # all traffic stays on this machine
REQUEST_TIMEOUT_S = 30.0


class Connection(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection: one request in flight, responses parsed by hand
    (status line, Content-Length or chunked, Connection: close)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.closed = False
        self.head: tuple[int, int, bool, bool, int] | None = None  # status, length, chunked...

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            if self.head is not None and self.head[1] < 0 and not self.head[2]:
                self._finish(bytes(self.buffer[self.head[4] :]))  # body delimited by close
            else:
                self.waiter.set_exception(ConnectionError("connection closed mid-response"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is not None:
            self._parse()

    def request(self, payload: bytes) -> asyncio.Future:
        self.waiter = asyncio.get_running_loop().create_future()
        self.head = None
        self.transport.write(payload)
        return self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.closed = True

    def _parse(self) -> None:
        buffer = self.buffer
        if self.head is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(buffer[:end]).split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            length, chunked, close = -1, False, lines[0].startswith(b"HTTP/1.0")
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                elif name == b"connection":
                    close = value.strip().lower() == b"close"
            self.head = (status, length, chunked, close, end + 4)
        status, length, chunked, close, start = self.head
        if chunked:
            body, position = bytearray(), start
            while True:
                line_end = buffer.find(b"\r\n", position)
                if line_end < 0:
                    return
                size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
                if size == 0:
                    if len(buffer) < line_end + 4:
                        return
                    del buffer[: line_end + 4]
                    self._done(bytes(body))
                    return
                if len(buffer) < line_end + 2 + size + 2:
                    return
                body += buffer[line_end + 2 : line_end + 2 + size]
                position = line_end + 2 + size + 2
        if length < 0:
            return  # delimited by the server closing the connection
        if len(buffer) - start < length:
            return
        body = bytes(buffer[start : start + length])
        del buffer[: start + length]
        self._done(body)

    def _done(self, body: bytes) -> None:
        if self.head[3]:
            self.close()
        self._finish(body)

    def _finish(self, body: bytes) -> None:
        waiter, self.waiter = self.waiter, None
        status = self.head[0]
        self.head = None
        if waiter is not None and not waiter.done():
            waiter.set_result((status, body))


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    wall_s: float = 0.0
    client_cpu_s: float = 0.0

    def error(self, message: str) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = message[:300]


async def drive(
    port: int,
    requests: list[bytes],
    count: int,
    concurrency: int,
    time_limit_s: float,
    check: Callable[[int, bytes], str | None] | None = None,
) -> Outcome:
    """Send ``count`` requests (cycling through ``requests``) over ``concurrency`` connections,
    each with one request in flight; stop early at ``time_limit_s``."""
    loop = asyncio.get_running_loop()
    outcome = Outcome()
    issued = 0
    deadline = time.perf_counter() + time_limit_s

    def expire(future: asyncio.Future) -> None:
        if not future.done():
            future.set_exception(TimeoutError(f"no answer in {REQUEST_TIMEOUT_S:g} s"))

    async def client() -> None:
        nonlocal issued
        connection: Connection | None = None
        while issued < count and time.perf_counter() < deadline:
            index = issued
            issued += 1
            began = time.perf_counter()
            try:
                if connection is None or connection.closed:
                    _, connection = await loop.create_connection(Connection, HOST, port)
                future = connection.request(requests[index % len(requests)])
                timer = loop.call_later(REQUEST_TIMEOUT_S, expire, future)
                status, body = await future
                timer.cancel()
            except (OSError, TimeoutError, ValueError, IndexError) as exc:
                outcome.error(f"{type(exc).__name__}: {exc}")
                if connection is not None:
                    connection.close()
                connection = None
                continue
            outcome.latencies.append(time.perf_counter() - began)
            if status != 200:
                outcome.error(f"HTTP {status}: {body[:200]!r}")
            elif check is not None:
                problem = check(index % len(requests), body)
                if problem:
                    outcome.error(problem)
        if connection is not None:
            connection.close()

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    outcome.wall_s = time.perf_counter() - wall
    outcome.client_cpu_s = time.process_time() - cpu
    return outcome


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


# --- the constant server (the load generator's ceiling) ------------------------------------


class ConstantProtocol(asyncio.Protocol):
    ANSWER = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 19\r\n\r\n"
        b'{"predictions":[0]}'
    )

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in bytes(self.buffer[:end]).split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[: end + 4 + length]
            self.transport.write(self.ANSWER)


def run_constant_server(port: int) -> None:
    loop = new_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(loop.create_server(ConstantProtocol, HOST, port))
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    try:
        loop.run_forever()
    finally:
        server.close()
