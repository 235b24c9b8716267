"""How a run reports progress: the ``Progress`` interface, a silent one, and the console's."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Protocol


class Progress(Protocol):
    def step_started(self, index: int, total: int, step: str) -> None: ...

    def step_finished(
        self, index: int, total: int, step: str, status: str, seconds: float
    ) -> None: ...


class SilentProgress:
    def step_started(self, index: int, total: int, step: str) -> None:
        pass

    def step_finished(self, index: int, total: int, step: str, status: str, seconds: float) -> None:
        pass


class ConsoleProgress:
    """``[2/4] train  completed  7.9s``, a line per step as it starts and ends; on a terminal
    (not in CI) one live line below them shows every running step and its time so far."""

    def __init__(self, stream=None, live: bool | None = None):
        self.stream = stream or sys.stderr
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.live = tty and not os.environ.get("CI") if live is None else live
        self._running: dict[str, float] = {}
        self._lock = threading.Lock()
        self._ticker: threading.Thread | None = None
        self._started = time.monotonic()

    def step_started(self, index: int, total: int, step: str) -> None:
        with self._lock:
            self._running[step] = time.monotonic()
            if not self.live:
                self._write(f"[{index}/{total}] {step}  running  (elapsed {self._elapsed()})\n")
            elif self._ticker is None:
                self._ticker = threading.Thread(target=self._tick, daemon=True)
                self._ticker.start()

    def step_finished(self, index: int, total: int, step: str, status: str, seconds: float) -> None:
        with self._lock:
            self._running.pop(step, None)
            prefix = "\r\033[K" if self.live else ""
            self._write(
                f"{prefix}[{index}/{total}] {step}  {status}  {seconds:.1f}s  "
                f"(elapsed {self._elapsed()})\n"
            )

    def _tick(self) -> None:
        """The live line, while any step runs; the thread ends when none does (the next step
        to start starts another)."""
        while True:
            time.sleep(0.25)
            with self._lock:
                if not self._running:
                    self._ticker = None
                    return
                now = time.monotonic()
                steps = ", ".join(f"{s} {now - t:.1f}s" for s, t in self._running.items())
                self._write(f"\r\033[Krunning: {steps}  (elapsed {self._elapsed()})")

    def _elapsed(self) -> str:
        return f"{time.monotonic() - self._started:.1f}s"

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
