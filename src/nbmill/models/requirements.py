"""What a saved model needs wherever it is loaded: the libraries its flavour uses, at the
versions it was trained with; the serializer it was saved with; and what Azure ML's no-code
MLflow deployment serves it with. Azure ML builds such a deployment's environment from the
model's own ``conda.yaml`` alone, so a package missing there is a deployment that crashes at
start; ``tests/test_model_requirements.py`` installs exactly this list in a clean environment
and loads and scores the model there."""

from __future__ import annotations

from importlib import metadata

# MLflow 3 saves scikit-learn models with skops: loading them needs it.
SERIALIZER = "skops"
# Azure ML's inference server, and its data collector (model_inputs/model_outputs), as in
# Microsoft's no-code MLflow deployment samples.
AZURE_ML_SERVING = ("azureml-inference-server-http==1.4.1", "azureml-ai-monitoring==1.0.0")


def pinned(*distributions: str) -> list[str]:
    """``name==version`` for each installed distribution: explicit, so MLflow infers nothing."""
    return [f"{name}=={metadata.version(name)}" for name in distributions]


def model_requirements(*distributions: str) -> list[str]:
    """The ``pip_requirements`` of a model whose flavour uses ``distributions`` (for
    scikit-learn: scikit-learn, numpy, pandas): each at its installed version, the serializer,
    and Azure ML's serving packages. MLflow adds itself."""
    return [*pinned(*distributions, SERIALIZER), *AZURE_ML_SERVING]
