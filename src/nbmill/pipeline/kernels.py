"""Each step's fresh kernel, started ahead: forked from the template (forkserver.py) where that
works, else started the plain way and warmed.

Every step runs in a new kernel process, as papermill does. Plain kernels are started one step
ahead (in a background thread, while the step before runs), with the step's environment and
folder, and import the modules the notebook imports (nothing else: no cell runs, no name is
bound). A forked kernel has those
imports from the template already and is ready in a fraction of a second. ``nbmill run
--no-warm`` starts each plain kernel only when its step begins.

What a notebook imports is read from its code; what the code it calls imports on first use
(a library's lazy imports, say) is learned: when a step ends, its kernel is asked which modules
it holds, and the next run's template imports those too (``learned_imports``), so the step's
cells find them loaded instead of importing them on the critical path.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from queue import Empty

from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.provisioning import LocalProvisioner

from nbmill._fs import user_cache, write_json
from nbmill.pipeline.forkserver import ForkServer
from nbmill.project.notebook import cell_source, code_cells, read_notebook

KERNEL = "python3"
WARM_TIMEOUT_S = 120


def notebook_imports(path: Path) -> list[str]:
    """Absolute module names the notebook's code cells import, in order of first appearance,
    then ``module.attribute`` for attributes used of an imported name (``models.register_model``
    after ``from nbmill import models``): a package that imports its parts on first use gets
    them preloaded too."""
    names: list[str] = []
    bound: dict[str, str] = {}  # name in the notebook -> what it was imported as
    for cell in code_cells(read_notebook(path)):
        lines = [
            line
            for line in cell_source(cell).splitlines()
            if not line.lstrip().startswith(("%", "!"))
        ]
        try:
            tree = ast.parse("\n".join(lines))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names += [alias.name for alias in node.names]
                for alias in node.names:
                    bound[alias.asname or alias.name] = alias.name
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.append(node.module)
                names += [f"{node.module}.{alias.name}" for alias in node.names]
                for alias in node.names:
                    bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if node.value.id in bound:
                    names.append(f"{bound[node.value.id]}.{node.attr}")
    return list(dict.fromkeys(names))


def _learned_path(notebook: Path) -> Path:
    key = hashlib.sha256(str(Path(notebook).resolve()).encode()).hexdigest()[:32]
    return user_cache("imports") / f"{key}.json"


def learned_imports(notebook: Path) -> list[str]:
    """The modules the notebook's kernel held when it last ended ([] if never learned, or the
    note cannot be read): importing them ahead is safe to get wrong, the step imports what is
    missing itself."""
    try:
        found = json.loads(_learned_path(notebook).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    modules = found.get("modules") if isinstance(found, dict) else None
    return [m for m in modules if isinstance(m, str)] if isinstance(modules, list) else []


def remember_imports(notebook: Path, modules: list[str]) -> None:
    """Note what the notebook's kernel held at its end, for the next run's template."""
    wanted = sorted(m for m in modules if not m.startswith("__") and m.isascii())
    try:
        write_json(_learned_path(notebook), {"notebook": str(notebook), "modules": wanted})
    except OSError:
        pass  # no cache folder: nothing learned, nothing lost


def preload_list(notebook: Path) -> list[str]:
    """What the template imports for a notebook: what its code imports, then what its last
    execution had imported besides."""
    direct = notebook_imports(notebook)
    return direct + [m for m in learned_imports(notebook) if m not in set(direct)]


def _preload_code(modules: list[str]) -> str:
    """What a plain kernel runs, silently, before the step: the template's preload, inside a
    function so that no name is left behind."""
    return (
        "def __nbmill_preload(names):\n"
        "    from nbmill.pipeline.forkserver import preload\n"
        "    preload(names)\n"
        f"__nbmill_preload({modules!r})\n"
        "del __nbmill_preload\n"
    )


class ReadyClient(AsyncKernelClient):
    """jupyter_client's client, without the fixed wait in ``wait_for_ready``.

    After the kernel answers ``kernel_info`` (and IOPub is seen to be connected), jupyter_client
    reads IOPub until it has been quiet for 0.2 s, to throw away what came before. papermill's
    client matches every message to the request it sent and ignores the rest, so that quiet
    time is a pure wait: 0.2 s a step. Here what has arrived is read, and nothing waited for."""

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        while True:
            self.kernel_info()
            try:
                msg = await self.shell_channel.get_msg(timeout=1)
            except Empty:
                pass
            else:
                if msg["msg_type"] == "kernel_info_reply":
                    try:  # IOPub is connected once the kernel's status reaches it
                        await self.iopub_channel.get_msg(timeout=0.2)
                    except Empty:
                        pass
                    else:
                        self._handle_kernel_info_reply(msg)
                        break
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds")
        while await self.iopub_channel.msg_ready():
            await self.iopub_channel.get_msg(timeout=0)


class ForkedProcess:
    """What jupyter_client asks of a kernel's Popen, for a kernel the template forked."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int, server: ForkServer):
        self.pid, self.server = pid, server
        self.returncode: int | None = None

    def poll(self) -> int | None:
        self.returncode = self.server.exit_code(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        code = self.server.wait(self.pid, timeout)
        if code is None:
            raise subprocess.TimeoutExpired(f"kernel {self.pid}", timeout)
        self.returncode = code
        return code

    def send_signal(self, number: int) -> None:
        if self.poll() is not None:
            return  # as Popen does: a process that has ended gets no signal
        try:
            os.kill(self.pid, number)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class ForkProvisioner(LocalProvisioner):
    """jupyter_client's local provisioner, launching by fork from the template."""

    server: ForkServer | None = None
    modules: list[str] = []  # what the notebook imports: the fork waits until these are in

    async def launch_kernel(self, cmd: list[str], **kwargs):
        env = dict(kwargs.get("env") or os.environ)
        cwd = str(kwargs.get("cwd") or Path.cwd())
        connection = self.parent.connection_file
        pid = await asyncio.to_thread(self.server.fork, connection, env, cwd, self.modules)
        self.process = ForkedProcess(pid, self.server)
        self.pid = self.pgid = pid
        self.cwd = cwd
        return self.connection_info


class KernelStart:
    """A kernel being started (and, the plain way, warmed) in a background thread for one
    notebook."""

    def __init__(
        self,
        notebook: Path,
        env: dict[str, str],
        warm: bool = True,
        server: ForkServer | None = None,
    ):
        self.notebook = notebook
        self.env = {**os.environ, **env}
        self.warm = warm
        self.server = server
        self._sockets = tempfile.TemporaryDirectory(prefix="nbmill-kernel-")
        self.km = None
        self.error: BaseException | None = None
        self.killed = False
        self._thread = threading.Thread(target=self._start, name="nbmill-kernel", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        try:
            asyncio.run(self._start_and_warm())
        except BaseException as exc:  # reported when the kernel is taken
            self.error = exc

    async def _start_and_warm(self) -> None:
        from jupyter_client import AsyncKernelManager

        # IPC sockets in a private folder: no TCP port, nothing another user can reach.
        km = AsyncKernelManager(
            kernel_name=KERNEL, transport="ipc", ip=f"{self._sockets.name}/kernel"
        )
        km.client_factory = ReadyClient
        if self.server is not None:
            km.kernel_id = str(uuid.uuid4())
            provisioner = ForkProvisioner(
                kernel_id=km.kernel_id, kernel_spec=km.kernel_spec, parent=km
            )
            provisioner.server = self.server
            provisioner.modules = notebook_imports(self.notebook)
            km.provisioner = provisioner
        await km.start_kernel(cwd=str(self.notebook.parent), env=self.env)
        self.km = km
        if self.killed:  # killed while it was starting
            self.kill()
            return
        if self.server is None and not self.warm:
            return
        # A client of the manager asks the process, not the heartbeat, whether the kernel lives:
        # a busy machine delays heartbeats but must not fail a step.
        client = km.client()
        client.start_channels()
        try:
            await client.wait_for_ready(timeout=WARM_TIMEOUT_S)
            if self.server is None:  # a forked kernel has the imports already
                code = _preload_code(preload_list(self.notebook))
                await client.execute(
                    code, silent=True, store_history=False, reply=True, timeout=WARM_TIMEOUT_S
                )
        finally:
            client.stop_channels()

    def take(self):
        """The started kernel's manager, or None if it could not be started or warmed (the step
        then starts its own kernel, as papermill does)."""
        self._thread.join()
        if self.error is not None:
            self.shutdown()
            return None
        return self.km

    @property
    def pid(self) -> int | None:
        provisioner = getattr(self.km, "provisioner", None)
        return getattr(provisioner, "pid", None)

    def exit_code(self) -> int | None:
        """How the kernel process ended (negative: by that signal), None while it runs."""
        provisioner = getattr(self.km, "provisioner", None)
        process = getattr(provisioner, "process", None)
        return process.poll() if process is not None else None

    def kill(self) -> None:
        """SIGKILL the kernel and what it started, now (for timeouts and interrupts); a kernel
        still starting is killed as soon as it has started."""
        self.killed = True
        pid = self.pid
        if pid:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass

    def modules(self, timeout: float = 5.0) -> list[str] | None:
        """The names in the kernel's ``sys.modules`` (None if it cannot say: it died, or did
        not answer in ``timeout`` seconds). Nothing is bound in the kernel's namespace."""
        if self.km is None or not self.km.has_kernel:
            return None

        async def ask() -> list[str] | None:
            client = self.km.client()
            client.start_channels()
            try:
                reply = await client.execute(
                    "",
                    silent=True,
                    store_history=False,
                    user_expressions={"m": "'\\n'.join(sorted(__import__('sys').modules))"},
                    reply=True,
                    timeout=timeout,
                )
            finally:
                client.stop_channels()
            found = (reply.get("content") or {}).get("user_expressions", {}).get("m", {})
            text = (found.get("data") or {}).get("text/plain")
            return ast.literal_eval(text).split("\n") if isinstance(text, str) else None

        try:
            return asyncio.run(ask())
        except Exception:  # noqa: BLE001 - a kernel that cannot say teaches nothing
            return None

    def shutdown(self) -> None:
        """Stop the kernel (politely, then by force) and clean up; never raises: a kernel that
        died already has nothing left to stop."""
        self._thread.join()
        if self.km is not None and self.km.has_kernel:
            try:
                asyncio.run(self.km.shutdown_kernel(now=False))
            except Exception:
                try:
                    asyncio.run(self.km.shutdown_kernel(now=True))
                except Exception:
                    self.kill()
        self.km = None
        self._sockets.cleanup()
