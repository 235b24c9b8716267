"""Fresh kernels, started one step ahead.

Every step runs in a new kernel process, as papermill does. What nbmill adds: while step N runs,
the kernel for step N+1 is already starting on the other core, with step N+1's environment and
folder, and imports the modules its notebook imports (nothing else: no cell runs, no name is
bound). Importing scikit-learn, pandas and MLflow is most of a small step's time, so this
overlaps it with the step before. ``nbmill run --no-warm`` turns it off.
"""

from __future__ import annotations

import ast
import asyncio
import os
import tempfile
import threading
from pathlib import Path

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


def _preload_code(modules: list[str]) -> str:
    return (
        "def __nbmill_preload(names):\n"
        "    import importlib\n"
        "    for name in names:\n"
        "        try:\n"
        "            importlib.import_module(name)\n"
        "        except ImportError:\n"  # not a module: an attribute, maybe imported lazily
        "            parent, _, attribute = name.rpartition('.')\n"
        "            try:\n"
        "                getattr(importlib.import_module(parent), attribute)\n"
        "            except Exception:\n"
        "                pass\n"
        "        except Exception:\n"
        "            pass\n"
        f"__nbmill_preload({modules!r})\n"
        "del __nbmill_preload\n"
    )


class KernelStart:
    """A kernel being started (and warmed) in a background thread for one notebook."""

    def __init__(self, notebook: Path, env: dict[str, str], warm: bool = True):
        self.notebook = notebook
        self.env = {**os.environ, **env}
        self.warm = warm
        self._sockets = tempfile.TemporaryDirectory(prefix="nbmill-kernel-")
        self.km = None
        self.error: BaseException | None = None
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
        await km.start_kernel(cwd=str(self.notebook.parent), env=self.env)
        self.km = km
        if not self.warm:
            return
        # A client of the manager asks the process, not the heartbeat, whether the kernel lives:
        # a busy machine delays heartbeats but must not fail a step.
        client = km.client()
        client.start_channels()
        try:
            await client.wait_for_ready(timeout=WARM_TIMEOUT_S)
            code = _preload_code(notebook_imports(self.notebook))
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

    def shutdown(self) -> None:
        self._thread.join()
        if self.km is not None and self.km.has_kernel:
            try:
                asyncio.run(self.km.shutdown_kernel(now=False))
            except Exception:
                asyncio.run(self.km.shutdown_kernel(now=True))
        self.km = None
        self._sockets.cleanup()
