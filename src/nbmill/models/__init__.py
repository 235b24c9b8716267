"""Models: register (MLflow registry), gate, move aliases, package (deploying is serving's).

What notebooks call, a small surface that internal moves do not break::

    from nbmill import models
    models.log_model_files(saved_dir)                 # a saved MLflow model -> its runs:/ URI
    models.run_provenance(train_data)                 # run id, commit, data sha256, environment
    models.register_model(uri, name, model_dir=..., **provenance)
    models.evaluate_and_gate(name, model_dir, scorer, metric=..., ...)

Each name is imported on first use, so ``nbmill.models.gate`` (pure) needs no MLflow.
"""

from __future__ import annotations

from nbmill._lazy import surface

__getattr__, __all__ = surface(
    __name__,
    {
        "nbmill.models.registry": (
            "log_model_files",
            "run_provenance",
            "register_model",
            "fetch",
            "list_models",
        ),
        "nbmill.models.evaluate": ("evaluate_and_gate",),
        "nbmill.models.aliases": ("promote", "rollback"),
        "nbmill.models.package": ("package_model",),
        "nbmill.models.gate": ("Decision",),
    },
)
