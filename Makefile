# LNN — the entry points a person types. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BIN ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
UV_VERSION := 0.9.10
DATASET ?=
CAT_H5 := ../shared/datasets/catvnoncat.h5

.PHONY: help setup test lint demo bench clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements-dev.lock requirements.lock
	$(PYTHON_BIN) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet uv==$(UV_VERSION)
	$(UV) pip sync --quiet --python $(PY) --require-hashes requirements-dev.lock
	touch $@

setup: $(VENV)/.installed ## virtual environment with pinned packages, and a redis-server
	@command -v redis-server >/dev/null || { \
	  echo "installing redis-server (Debian package)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }

lint: setup ## ruff over the package and the tests
	$(VENV)/bin/ruff check trainer tests
	$(VENV)/bin/ruff format --check trainer tests

test: setup lint ## everything CI runs: lint, unit, integration, terraform, image and workflow checks
	$(PY) -m pytest

demo: setup ## train the cat benchmark (or DATASET=...) through the local runner
	@if [ -n "$(DATASET)" ]; then ds="$(DATASET)"; \
	elif [ -f "$(CAT_H5)" ]; then ds="$(CAT_H5)"; echo "demo: training the cat/non-cat benchmark ($(CAT_H5))"; \
	else ds="moons"; echo "demo: $(CAT_H5) is not here; training the built-in 'moons' dataset instead"; fi; \
	$(PY) -m trainer demo --dataset "$$ds"

bench: setup ## benchmark: local chain vs monolithic numpy on the cat set; writes bench-results.json
	$(PY) -m trainer.bench --output bench-results.json

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache lnn-runs

# ---- terraform (issue 3) ---------------------------------------------------------------

# ---- image, workflows, deploy (issue 4) ------------------------------------------------
