"""Serving: a packaged or registered model behind an HTTP scoring service, and its deployment.

What notebooks call::

    from nbmill import serving
    serving.deploy_candidate(name, model_dir, package_dir, frame, columns)   # the deploy step

Each name is imported on first use.
"""

from __future__ import annotations

from nbmill._lazy import surface

_SURFACE = {
    "deploy_candidate": "nbmill.serving.deploy",
    "smoke_test": "nbmill.serving.deploy",
}

__all__ = sorted(_SURFACE)

__getattr__ = surface(__name__, _SURFACE)
