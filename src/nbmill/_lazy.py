"""A package's surface for notebooks, each name imported from its module on first use: moving
code inside the package breaks no notebook, and importing the package costs nothing."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def surface(package: str, modules: dict[str, tuple[str, ...]]) -> tuple[Callable, list[str]]:
    """The package's module ``__getattr__`` and ``__all__``: ``modules`` maps each module to the
    names it gives the surface."""
    home = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name in home:
            return getattr(import_module(home[name]), name)
        raise AttributeError(f"module '{package}' has no attribute '{name}'")

    return __getattr__, sorted(home)
