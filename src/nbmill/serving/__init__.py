"""Serving: a packaged or registered model behind an HTTP scoring service, and its deployment.

What notebooks call::

    from nbmill import serving
    serving.deploy_candidate(name, model_dir, package_dir, frame, columns)   # the deploy step

Each name is imported on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_SURFACE = {
    "deploy_candidate": "nbmill.serving.deploy",
    "smoke_test": "nbmill.serving.deploy",
}

__all__ = sorted(_SURFACE)


def __getattr__(name: str) -> Any:
    if name in _SURFACE:
        return getattr(import_module(_SURFACE[name]), name)
    raise AttributeError(f"module 'nbmill.serving' has no attribute '{name}'")
