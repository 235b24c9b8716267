"""Batching: every request that arrived in one turn of the event loop is scored with one
``predict`` call."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np


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
