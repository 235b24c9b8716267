"""Serving: a packaged or registered model behind an HTTP scoring service, and its deployment.

What notebooks call::

    from nbmill import serving
    serving.deploy_candidate(name, model_dir, package_dir, frame, columns)   # the deploy step

Each name is imported on first use.
"""

from __future__ import annotations

from nbmill._lazy import surface

__getattr__, __all__ = surface(
    __name__,
    {
        "nbmill.serving.deploy": ("deploy_candidate", "smoke_test"),
    },
)
