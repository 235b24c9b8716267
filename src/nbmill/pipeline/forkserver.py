"""Fork-server kernels: one template process imports what the pipeline's notebooks import, once;
each step's kernel is a fresh process forked from it, as soon as what its notebook imports is
in.

The template (``python -m nbmill.pipeline.forkserver``, a child of the runner) imports ipykernel
and the notebooks' modules, and nothing else happens in it: no cell runs, no thread starts, no
socket opens. For each kernel it forks a child, which takes the step's folder and environment,
reseeds the random number generators, then creates its own ``IPKernelApp``, ZMQ sockets and
Session from the connection file the runner wrote. Each step still gets its own process and
state; only the imports are shared, copy-on-write.

The runner talks to the template over its stdin and stdout (JSON lines): ``fork`` requests, and
``exited`` notices for the children it reaps. The template dies with the runner, and its
children die with it (Linux's parent-death signal), so no kernel outlives a killed runner.

Forking needs Linux (``os.fork`` and ``prctl``); elsewhere, or if the template fails to start
or finds a thread running after its imports, kernels start the plain way and the run record says
why.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

PR_SET_PDEATHSIG = 1
READY_TIMEOUT_S = 180
_protocol = 1  # the template's channel to the runner: its real stdout, kept apart from prints


def die_with_parent() -> bool:
    """Ask Linux to SIGKILL this process when its parent exits; False where that is impossible."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def why_not_available() -> str | None:
    """None when fork-server kernels can run here, else the reason."""
    if not hasattr(os, "fork"):
        return "os.fork is not available on this platform"
    if not sys.platform.startswith("linux"):
        return f"fork-server kernels need Linux's parent-death signal ({sys.platform})"
    return None


# --- the template process ------------------------------------------------------------------


def _send(message: dict[str, Any]) -> None:
    os.write(_protocol, (json.dumps(message) + "\n").encode())


def preload(names: list[str]) -> None:
    """Import each module (or, for ``module.attribute``, the module and the attribute).
    Warnings and what a module prints while it is imported are not shown: no notebook is there
    to show them in, and the run's own output stays the run's."""
    with warnings.catch_warnings(), _silenced():
        warnings.simplefilter("ignore")
        for name in names:
            _import(name)


@contextmanager
def _silenced() -> Iterator[None]:
    """File descriptors 1 and 2 to /dev/null for the block (output written by C code too)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def _import(name: str) -> None:
    try:
        importlib.import_module(name)
    except ImportError:
        parent, _, attribute = name.rpartition(".")
        try:
            getattr(importlib.import_module(parent), attribute)
        except Exception:
            pass
    except Exception:
        pass


def _run_kernel(request: dict[str, Any]) -> None:
    """In the forked child: become the step's kernel. Never returns."""
    try:
        os.setsid()  # its own process group: signals to the kernel reach what it starts too
        die_with_parent()
        signal.set_wakeup_fd(-1)
        for number in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM):
            signal.signal(number, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.close(_protocol)  # the runner's pipes stay the template's alone
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        numpy = sys.modules.get("numpy")
        if numpy is not None:  # Python's random reseeds itself at fork; numpy's global does not
            numpy.random.seed()
        from ipykernel.kernelapp import IPKernelApp

        app = IPKernelApp.instance()
        app.initialize(["-f", request["connection_file"]])
        app.start()
    except BaseException as exc:  # noqa: BLE001 - the child must never return into the template
        print(f"nbmill: forked kernel failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        os._exit(1)
    os._exit(0)


def _reap(children: set[int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        _send({"exited": pid, "status": os.waitstatus_to_exitcode(status)})


def _threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t is not threading.main_thread())


def serve() -> int:
    """The template's main loop: import, step by step, what the notebooks import; fork each
    kernel as soon as the modules its notebook needs are in."""
    global _protocol
    _protocol = os.dup(1)
    os.dup2(2, 1)  # what a preloaded module prints goes to stderr, not into the protocol
    if not die_with_parent():
        _send({"ready": False, "why": "the parent-death signal cannot be set"})
        return 1
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides what an interrupt does
    import ipykernel.kernelapp  # noqa: F401 - while the runner plans: it may start us early

    setup = json.loads(sys.stdin.readline() or "{}")

    if _threads():
        _send({"ready": False, "why": f"threads running after importing ipykernel: {_threads()}"})
        return 1
    to_import = list(dict.fromkeys(setup.get("preload", [])))
    done: set[str] = set()
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    _send({"ready": True, "pid": os.getpid()})
    children: set[int] = set()
    waiting: list[dict[str, Any]] = []
    buffer = b""
    while True:
        timeout = 0 if to_import or waiting else None
        readable, _, _ = select.select([0, wake_read], [], [], timeout)
        if wake_read in readable:
            os.read(wake_read, 512)
            _reap(children)
        if 0 in readable:
            chunk = os.read(0, 1 << 16)
            if not chunk:  # the runner closed the pipe, or died: so do the kernels
                for pid in children:
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except OSError:
                        pass
                os._exit(0)  # no interpreter teardown of everything it imported
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                waiting.append(json.loads(line))
        for request in [r for r in waiting if set(r.get("modules", [])) <= done or not to_import]:
            waiting.remove(request)
            if _threads():
                _send({"id": request["id"], "error": f"threads running: {', '.join(_threads())}"})
                continue
            pid = os.fork()
            if pid == 0:
                os.close(wake_read)
                os.close(wake_write)
                _run_kernel(request)
            children.add(pid)
            _send({"id": request["id"], "pid": pid})
        if to_import:
            name = to_import.pop(0)
            preload([name])
            done.add(name)


# --- the runner's side ---------------------------------------------------------------------


class ForkServerError(Exception):
    """The template could not start, or could not fork a kernel."""


class ForkServer:
    """The template process, seen from the runner: start it, fork kernels, learn their exits.

    It imports ipykernel as soon as it starts, then waits for the list of modules to preload
    (``preload``), so it can be started before the pipeline is even read."""

    def __init__(self, preload: list[str] | None = None):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "nbmill.pipeline.forkserver"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,  # a Ctrl-C in the terminal is the runner's to handle
        )
        self._lock = threading.Lock()
        self._next = 0
        self._replies: dict[int, Future] = {}
        self._exits: dict[int, int] = {}
        self._exited = threading.Condition()
        self._ready: Future = Future()
        self._reader = threading.Thread(target=self._read, name="nbmill-forkserver", daemon=True)
        self._reader.start()
        if preload is not None:
            self.preload(preload)

    def _read(self) -> None:
        for line in self.process.stdout:
            message = json.loads(line)
            if "ready" in message:
                self._ready.set_result(message)
            elif "exited" in message:
                with self._exited:
                    self._exits[message["exited"]] = message["status"]
                    self._exited.notify_all()
            elif "id" in message:
                reply = self._replies.pop(message["id"])
                if "error" in message:
                    reply.set_exception(ForkServerError(message["error"]))
                else:
                    reply.set_result(message["pid"])
        problem = ForkServerError(f"the template process exited ({self.process.wait()})")
        if not self._ready.done():
            self._ready.set_exception(problem)
        for reply in list(self._replies.values()):
            reply.set_exception(problem)
        with self._exited:
            self._exited.notify_all()

    def preload(self, names: list[str]) -> None:
        """What to import before forking (once: the template's first line)."""
        with self._lock:
            self.process.stdin.write((json.dumps({"preload": names}) + "\n").encode())
            self.process.stdin.flush()

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> dict[str, Any]:
        """The template's ready message; ForkServerError if it cannot serve."""
        message = self._ready.result(timeout)
        if not message["ready"]:
            raise ForkServerError(message["why"])
        return message

    def fork(self, connection_file: str, env: dict[str, str], cwd: str, modules: list[str]) -> int:
        """A new kernel process for ``connection_file``, forked once ``modules`` (what its
        notebook imports) are imported in the template; returns its pid."""
        self.wait_ready()
        with self._lock:
            self._next += 1
            reply: Future = Future()
            self._replies[self._next] = reply
            request = {"id": self._next, "connection_file": connection_file, "env": env}
            request.update(cwd=cwd, modules=modules)
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
        return reply.result(READY_TIMEOUT_S)

    def exit_code(self, pid: int) -> int | None:
        """The kernel's exit code (negative: the signal that killed it), None while it runs."""
        with self._exited:
            return self._exits.get(pid)

    def wait(self, pid: int, timeout: float | None = None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._exited:
            while pid not in self._exits and self.process.poll() is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._exited.wait(left)
            return self._exits.get(pid)

    def close(self) -> None:
        """Close the template's stdin: it kills what is left of its kernels and exits."""
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_early: list[ForkServer] = []  # started by ``started_early``, not yet taken by a run


@contextmanager
def started_early(wanted: bool = True) -> Iterator[None]:
    """Start a template now, for the run inside the block to take (``take_early``): it imports
    ipykernel while the runner imports its own modules and plans. Closed at the end of the
    block if no run took it (the plan failed, or no kernel was needed)."""
    if wanted and why_not_available() is None:
        _early.append(ForkServer())
    try:
        yield
    finally:
        while _early:
            _early.pop().close()


def take_early() -> ForkServer | None:
    """The template ``started_early`` started, now the caller's to close; None if none."""
    return _early.pop() if _early else None


if __name__ == "__main__":
    sys.exit(serve())
