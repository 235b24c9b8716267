"""SIGINT and SIGTERM during a run: noted, not raised, so the run can end in order.

The first signal is noted: the runner stops its kernels, archives what the steps wrote, records
the run as interrupted and exits with 128 + the signal's number. A second one acts as the
signal normally does.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    """Inside ``with Interrupts() as interrupts:``, ``interrupts.signum`` is the first signal
    that came (None until then). Only the main thread can install handlers; elsewhere this
    notes nothing."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.event = threading.Event()
        self._previous: dict[int, object] = {}

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum
        self.event.set()
        for number, previous in self._previous.items():  # a second signal acts as usual
            signal.signal(number, previous)

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for number in SIGNALS:
                self._previous[number] = signal.signal(number, self._note)
        return self

    def __exit__(self, *exc_info) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous)
        self._previous.clear()

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""
