"""Models: register (MLflow registry), gate, move aliases, package (deploying is serving's).

What notebooks call, a small surface that internal moves do not break::

    from nbmill import models
    models.run_provenance(train_data)                 # run id, commit, data sha256, environment
    models.register_model(info, name, model_dir=..., **provenance)
    models.evaluate_and_gate(name, model_dir, scorer, metric=..., ...)

Each name is imported on first use, so ``nbmill.models.gate`` (pure) needs no MLflow.
"""

from __future__ import annotations

from nbmill._lazy import surface

_SURFACE = {
    "run_provenance": "nbmill.models.registry",
    "register_model": "nbmill.models.registry",
    "fetch": "nbmill.models.registry",
    "list_models": "nbmill.models.registry",
    "evaluate_and_gate": "nbmill.models.evaluate",
    "promote": "nbmill.models.aliases",
    "rollback": "nbmill.models.aliases",
    "package_model": "nbmill.models.package",
    "Decision": "nbmill.models.gate",
}

__all__ = sorted(_SURFACE)

__getattr__ = surface(__name__, _SURFACE)
