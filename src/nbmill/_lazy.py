"""A package's surface for notebooks, each name imported from its module on first use: moving
code inside the package breaks no notebook, and importing the package costs nothing."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def surface(package: str, names: dict[str, str]) -> Callable[[str], Any]:
    """The package's module ``__getattr__``: ``names`` maps each name to its module."""

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(import_module(names[name]), name)
        raise AttributeError(f"module '{package}' has no attribute '{name}'")

    return __getattr__
