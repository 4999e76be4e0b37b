# Two entry points for a fresh machine (see README): `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SHARED ?= ../shared
# `make run PORT=8001` when 8000 is taken; HOST=0.0.0.0 to serve other machines.
PORT ?= 8000
HOST ?= 127.0.0.1

# Tests, benchmarks and `models fetch` find ../shared through this setting.
export EMOTION_SHARED_DIR ?= $(abspath $(SHARED))
# Keep tool caches in the build tree, not in $HOME.
export npm_config_cache := $(CURDIR)/.cache/npm
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export JSII_RUNTIME_PACKAGE_CACHE_ROOT := $(CURDIR)/.cache/jsii
export CDK_HOME := $(CURDIR)/.cache/cdk
export XDG_CACHE_HOME := $(CURDIR)/.cache

.PHONY: setup setup-test models run test lint bench clean

# Runtime install: the service and the CLI. Quiet: `make run` shows one line per model, then the URL
# (pip -qq: errors only; setuptools warns at every editable install of the model/ -> emotion.model mapping).
$(BIN)/.runtime: pyproject.toml
	@echo "emotion: installing the service into $(VENV) (the first time takes a few minutes)"
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -qq --disable-pip-version-check --upgrade pip
	@$(BIN)/pip install -qq --disable-pip-version-check -c layers/requirements-lambda.txt -e .
	@touch $@

# Everything the tests need: dev tools, CDK libs, torch (CPU wheel), Chromium, the CDK CLI.
$(BIN)/.test: $(BIN)/.runtime
	$(BIN)/pip install -q -c layers/requirements-lambda.txt -e '.[dev,infra,train]'
	touch $@

setup: $(BIN)/.runtime models

models: $(BIN)/.runtime
	@$(BIN)/emotion models fetch --from $(SHARED)/models

system-deps:
	@command -v chromium >/dev/null && command -v jq >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver jq >/dev/null; }
	@[ -x node_modules/.bin/cdk ] || npm ci --no-audit --no-fund --loglevel=error

setup-test: $(BIN)/.test models system-deps

run: setup
	@$(BIN)/emotion serve --host $(HOST) --port $(PORT)

test: setup-test
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(BIN)/.test
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/mypy

bench: setup
	$(BIN)/emotion bench

clean:
	rm -rf $(VENV) .models .cache cdk.out node_modules test-artifacts
