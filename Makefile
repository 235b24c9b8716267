# The README's two commands: `make run` and `make test`. Both create and reuse .venv through uv,
# installed on first use into .tools/ (or taken from PATH), with the versions in uv.lock.
PYTHON ?= python3
UV_VERSION ?= 0.13.9
UV ?= $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
PIPELINE ?= pipelines/training.yml
PARAMS ?= params/dev.yml
REASON ?= quick start
PYTEST_ARGS ?=
export PIPELINE PARAMS REASON  # read back from the environment, so no text is re-parsed by the shell
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := .venv
# Python may keep its bytecode cache (some machines set PYTHONDONTWRITEBYTECODE): every kernel,
# the fork-server template and the smoke-test server import the same modules, from .pyc files.
unexport PYTHONDONTWRITEBYTECODE

MLFLOW_VERSION = $(shell sed -n '/^name = "mlflow-skinny"$$/{n;s/version = "\(.*\)"/\1/p;}' uv.lock)

.PHONY: run test lint lab ui setup setup-azure clean

run: setup  ## set up, then run the training pipeline on the embedded diabetes data
	.venv/bin/nbmill run "$$PIPELINE" --params "$$PARAMS" --reason "$$REASON"

test: .tools/bin/uv  ## set up with the dev tools (and azure-ai-ml, for the offline Azure checks), lint, then run every test
	$(UV) sync --frozen --inexact --python $(PYTHON) --group dev --group azure
	.venv/bin/ruff check .
	.venv/bin/pytest $(PYTEST_ARGS)

setup: .tools/bin/uv
	$(UV) sync --frozen --inexact --python $(PYTHON)

setup-azure: .tools/bin/uv  ## the environment plus azure-ai-ml and Azure ML's MLflow plugin (workspace tracking), all from uv.lock
	$(UV) sync --frozen --inexact --python $(PYTHON) --group azure

lab: .tools/bin/uv  ## JupyterLab in the same environment, for authoring notebooks
	$(UV) sync --frozen --inexact --python $(PYTHON) --group lab
	.venv/bin/jupyter lab notebooks/

ui: .tools/bin/uv  ## the MLflow UI on the project's store (full MLflow, in a tool environment of its own)
	$(UV) tool run --from mlflow==$(MLFLOW_VERSION) mlflow ui --backend-store-uri sqlite:///mlflow.db

.tools/bin/uv:
	@if [ "$(UV)" = ".tools/bin/uv" ]; then \
		$(PYTHON) -m venv .tools && .tools/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION); \
	else mkdir -p .tools/bin && ln -sf "$(UV)" .tools/bin/uv; fi

clean:
	rm -rf .venv .tools runs mlflow.db mlartifacts
