"""The Azure Machine Learning back end: the same pipelines as Azure ML pipeline jobs, models on
managed online endpoints (blue/green), and Azure ML model monitoring, built as real azure-ai-ml
(SDK v2) entities and checked offline with the SDK's own loaders and validators.

This package is the only place that imports ``azure.ai.ml`` (about 4.5 s): only when asked for
(``nbmill run --on azureml``, ``nbmill deploy``, ``nbmill monitor-schedule``). Install it with
``make setup-azure`` (the ``azure`` dependency group).
"""

import logging


def sdk():
    """``azure.ai.ml``, imported, with its per-class "experimental" warnings and its inline
    environment notes quiet (its errors still show)."""
    import azure.ai.ml

    logging.getLogger("azure.ai.ml").setLevel(logging.ERROR)
    return azure.ai.ml
