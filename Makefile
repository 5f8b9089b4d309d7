# Every target builds its own virtual environment from nothing (Python + pip only).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench bench-ops bench-gc bench-server fuzz reliability clean browser

# The Web UI test drives Debian's chromium through Playwright (Playwright's own
# browser download needs the internet). Idempotent; a failed install fails `make test`.
browser:
	command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/casstore demo $(DEMO_ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Azurite (the Azure Storage emulator the object-store tests run against), from npm.
AZURITE := .node/node_modules/.bin/azurite-blob

$(AZURITE):
	npm install --prefix .node --no-audit --no-fund azurite@3

test: lint browser $(AZURITE)
	$(BIN)/pytest

# Faults injected in front of real S3 servers, payloads lost, worst stall, peak memory
# (the figures in docs/reliability.md).
reliability: $(BIN)/.installed
	$(BIN)/python -m benchmarks.reliability $(RELIABILITY_ARGS)

# Long property-based fuzzing of claims and objects (make test runs a bounded profile).
fuzz: $(BIN)/.installed
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest tests/test_fuzz.py -p no:cacheprovider --timeout=3600

bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

bench-ops: $(BIN)/.installed
	$(BIN)/python -m benchmarks.ops $(BENCH_ARGS)

# casstore gc on a namespace of many closed workflows (10,000 by default; tens of
# minutes to build on 2 cores): BENCH_GC_ARGS="--workflows 2000 --store s3".
bench-gc: $(BIN)/.installed
	$(BIN)/python -m benchmarks.gc_scale $(BENCH_GC_ARGS)

# The codec server's load test at the sizes docs/codec-server.md reports (a few minutes);
# figures in test-artifacts/server-load.json. make test runs it at a smaller scale.
bench-server: $(BIN)/.installed
	CASSTORE_LOAD_SCALE=full $(BIN)/pytest tests/test_server_load.py -p no:cacheprovider -s -q

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
