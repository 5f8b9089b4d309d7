# Every target builds its own virtual environment from nothing (Python + pip only).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench bench-ops bench-gc bench-procs bench-server bench-agent fuzz batch-soak reliability clean browser redis

# The Web UI test drives Debian's chromium through Playwright (Playwright's own
# browser download needs the internet). Idempotent; a failed install fails `make test`.
browser:
	command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

# The Redis backend's tests run Debian's redis-server (started per test session on a
# free loopback port). Idempotent; a failed install fails `make test`.
redis:
	command -v redis-server >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server)

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

test: lint browser redis $(AZURITE)
	$(BIN)/pytest

# Faults injected in front of real S3 servers, payloads lost, worst stall, peak memory
# (the figures in docs/reliability.md).
reliability: $(BIN)/.installed
	$(BIN)/python -m benchmarks.reliability $(RELIABILITY_ARGS)

# One store() of 10,000 payloads on S3 (moto) behind a 20 ms latency proxy (make test runs 2,000).
batch-soak: $(BIN)/.installed
	CASSTORE_S3_BATCH=10000 $(BIN)/pytest tests/test_batch_deadline.py -p no:cacheprovider -k s3 --timeout=900

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

# Fan-out and threshold 0 across 1, 2, 4 and 8 worker processes on a dev server and
# one S3 server (minutes each): BENCH_PROCS_ARGS="--scenario threshold0 --workflows 200".
bench-procs: $(BIN)/.installed
	$(BIN)/python -m benchmarks.procs $(BENCH_PROCS_ARGS)

# The codec server's load test at the sizes docs/codec-server.md reports (a few minutes);
# figures in test-artifacts/server-load.json. make test runs it at a smaller scale.
bench-server: $(BIN)/.installed
	CASSTORE_LOAD_SCALE=full $(BIN)/pytest tests/test_server_load.py -p no:cacheprovider -s -q

bench-agent: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -e '.[bench-agent]'
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m benchmarks.agent --png docs/benchmarks-agent.png $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
