"""Setting environment variables for a while (a child process inherits them), then restoring."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager


@contextmanager
def environ(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set ``values`` in ``os.environ`` inside the block (None: unset it); afterwards each
    variable is as it was (unset again if it was unset)."""
    saved = {key: os.environ.get(key) for key in values}
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
