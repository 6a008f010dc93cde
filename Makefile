# Two entry points for a newcomer: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SHELL  := /bin/bash

.PHONY: run test lint unit venv venv-dev lock bench system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime-stamp: requirements.lock pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . || \
	  $(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

$(VENV)/.dev-stamp: requirements-dev.lock $(VENV)/.runtime-stamp
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
	touch $@

venv: $(VENV)/.runtime-stamp
venv-dev: $(VENV)/.dev-stamp

## run the appliance on the embedded default profile (installs what it needs first)
run: venv
	$(BIN)/appliance serve

## the whole test suite: system packages, lint, types, import contracts, every test
test: venv-dev system-deps lint unit

system-deps:
	bash tests/tools/install-system-deps.sh

lint: venv-dev
	$(BIN)/ruff check $(wildcard appliance tests bench soak image)
	$(BIN)/ruff format --check $(wildcard appliance tests bench soak image)
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: venv-dev
	$(BIN)/pytest -q -p no:cacheprovider

bench: venv-dev
	$(BIN)/python bench/bench_gateway.py

## CI extras after `make test` (issue 9): the quick benchmark matrix (frozen build included) and a 10-minute soak
.PHONY: bench-quick soak-ci
bench-quick: venv-dev dist
	$(BIN)/python bench/run_all.py --quick --strict --out build/ci/bench-quick.json
soak-ci: venv-dev
	$(BIN)/python soak/run.py --duration 10m --out build/ci/soak-10min

## regenerate the hash-pinned lock files (needs network to the package index)
lock:
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 --no-header -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 --no-header \
	  -c requirements.lock -o requirements-dev.lock

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache

## release artifacts (issue 7): signed bundle archive + manifest + minisig under dist/
.PHONY: dist verify-reproducible oci aarch64 bench-frozen nix-check
dist:
	image/build-dist.sh dist
verify-reproducible:
	image/verify-reproducible.sh
oci:
	CHECK_TWICE=1 image/build-oci.sh dist
aarch64:
	image/aarch64/build.sh dist/aarch64
bench-frozen: dist
	$(BIN)/python bench/bench_frozen.py --bundle dist/appliance
nix-check:
	nix-instantiate --parse flake.nix >/dev/null && nix-instantiate --eval --strict image/nix/offline-checks.nix
