# Resonance Liminal — the two commands are `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export UV_PYTHON_DOWNLOADS := never
export PATH := $(HOME)/.local/bin:$(PATH)

VENV      := .venv
PY        := $(VENV)/bin/python
CLUSTER   := e2e/cluster
RUN_DIR   := .run
COV_FAIL_UNDER := 90

.PHONY: help
help:  ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-14s %s\n", $$1, $$2}'

.PHONY: deps
deps:  ## Install system prerequisites (Debian packages, uv, Node packages), idempotently
	@.ci/deps

LOCK := requirements/dev.lock

# The environment is exactly the hashed lock (uv pip sync removes anything else), plus the project in
# editable mode. uv comes from pip when the machine lacks it.
$(VENV)/.synced: pyproject.toml $(LOCK)
	@command -v uv >/dev/null || python3 -m pip install --quiet --user uv
	@test -x $(VENV)/bin/python || uv venv --python python3.11 $(VENV)
	uv pip sync --python $(VENV)/bin/python --require-hashes $(LOCK)
	uv pip install --python $(VENV)/bin/python --no-deps -e .
	@touch $@

.PHONY: lock
lock:  ## Re-resolve pyproject.toml's dependencies into requirements/*.lock
	scripts/lock

.PHONY: venv
venv: $(VENV)/.synced  ## Create the virtualenv from the lock file

# `make run` needs the worker's runtime only (the hashed worker lock, as in the worker image), not the
# development environment (test clients, linters, the biometric baselines: ~1.2 GB).
RUN_VENV := .venv-run
RUN_LOCK := requirements/worker.lock

$(RUN_VENV)/.synced: pyproject.toml $(RUN_LOCK)
	@command -v uv >/dev/null || python3 -m pip install --quiet --user uv
	@test -x $(RUN_VENV)/bin/python || uv venv --python python3.11 $(RUN_VENV)
	uv pip sync --python $(RUN_VENV)/bin/python --require-hashes $(RUN_LOCK)
	uv pip install --python $(RUN_VENV)/bin/python --no-deps -e .
	@touch $@

# The web console (web/, npm + esbuild) is built into the worker package, which serves it at /.
CONSOLE_OUT := worker/resonance_worker/console_assets
CONSOLE_SRC := $(shell find web/src -type f 2>/dev/null) web/index.html web/build.mjs web/package.json web/package-lock.json \
	clients/yjs-provider/index.mjs

$(CONSOLE_OUT)/build.json: $(CONSOLE_SRC)
	@command -v npm >/dev/null || { echo "console: npm is missing (Node.js 20+ and npm build web/)"; exit 1; }
	@if [ ! -d web/node_modules ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then \
	  cd web && npm ci --no-audit --no-fund --loglevel=error; fi
	cd web && RESONANCE_CONSOLE_OUT=$(abspath $(CONSOLE_OUT)) node build.mjs

.PHONY: console
console: $(CONSOLE_OUT)/build.json  ## Build the web console into the worker package (needs Node.js and npm)

.PHONY: run
run: $(RUN_VENV)/.synced  ## Start a worker on localhost with the in-memory engine; the console is at /
	@$(MAKE) --no-print-directory console || echo "console: not built; the worker says at / how to build it"
	RESONANCE_LOG_JSON=$${RESONANCE_LOG_JSON:-false} $(RUN_VENV)/bin/resonance-worker

.PHONY: lint
lint: venv  ## ruff, mypy (both packages) and the import-linter contracts
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

.PHONY: binaries
binaries:  ## Build (or reuse cached) etcd, Kubernetes, kwok, kubectl and helm
	$(CLUSTER)/build-binaries >/dev/null

.PHONY: cluster-up cluster-down
cluster-up: binaries  ## Start the real control plane on loopback (prints KUBECONFIG)
	$(CLUSTER)/up
cluster-down:  ## Stop the control plane
	$(CLUSTER)/down

# What the tests start besides the binaries, built (or found cached) once before them: `make test` runs tests/
# in two processes, which would otherwise both wait on the first cold build (Centrifugo's alone ~2 min).
.PHONY: test-tools
test-tools: venv  ## Build (or reuse cached) Centrifugo, Neo4j's and S3Proxy's jars and the console (.ci/deps: the Java driver)
	bench/centrifugo/build
	e2e/services/neo4j/build
	e2e/services/s3proxy/build
	@$(MAKE) --no-print-directory console

.PHONY: images
images: venv  ## Build the worker and operator images without Docker (root, mmdebstrap; cached OCI layouts)
	$(PY) -m images.build worker operator

.PHONY: test
test: deps venv  ## Lint, build the binaries and the images (side by side), then unit, integration and e2e tests, with coverage
	@scripts/test-setup
	@scripts/test-all

.PHONY: e2e
e2e: venv  ## e2e tests only, against the cluster in $KUBECONFIG (kind, k3d, or `make cluster-up`)
	@test -n "$$KUBECONFIG" || { echo "set KUBECONFIG=... (or run make cluster-up)"; exit 2; }
	RESONANCE_REQUIRE_K8S=1 $(PY) -m pytest e2e

.PHONY: bench
bench: venv  ## A reduced benchmark set (a few minutes)
	$(PY) -m bench.run --quick

.PHONY: bench-bio
bench-bio: venv  ## The biometrics accuracy benchmark
	$(PY) -m bench.biometrics.run

.PHONY: soak
soak: deps venv  ## Ten minutes of load with faults on a schedule (not part of make test)
	$(PY) -m bench.soak.run --minutes $${SOAK_MINUTES:-10}

.PHONY: clean
clean:  ## Remove the virtualenv, run state and caches in the repo (not the binary cache)
	-$(CLUSTER)/down 2>/dev/null
	rm -rf $(VENV) $(RUN_VENV) $(RUN_DIR) .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.* htmlcov
