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
    """``[2/4] train  ok  7.9s``: a live line on a terminal, plain lines in CI and logs."""

    def __init__(self, stream=None, live: bool | None = None):
        self.stream = stream or sys.stderr
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.live = tty and not os.environ.get("CI") if live is None else live
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()
        self._started = time.monotonic()

    def step_started(self, index: int, total: int, step: str) -> None:
        label = f"[{index}/{total}] {step}"
        if not self.live:
            self._write(f"{label}  running  (elapsed {self._elapsed()})\n")
            return
        self._stop.clear()
        begun = time.monotonic()

        def tick() -> None:
            while not self._stop.wait(0.25):
                self._write(
                    f"\r{label}  running {time.monotonic() - begun:5.1f}s  "
                    f"(elapsed {self._elapsed()})"
                )

        self._ticker = threading.Thread(target=tick, daemon=True)
        self._ticker.start()

    def step_finished(self, index: int, total: int, step: str, status: str, seconds: float) -> None:
        if self._ticker:
            self._stop.set()
            self._ticker.join()
            self._ticker = None
        prefix = "\r\033[K" if self.live else ""
        self._write(
            f"{prefix}[{index}/{total}] {step}  {status}  {seconds:.1f}s  "
            f"(elapsed {self._elapsed()})\n"
        )

    def _elapsed(self) -> str:
        return f"{time.monotonic() - self._started:.1f}s"

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
