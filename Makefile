# The two commands of the README, and a few more. Each creates .venv if missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint unit integration faults bench models clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## demo: the embedded local stack (nats-server, cloud, edge, cameras) and its summary
demo: $(STAMP)
	$(BIN)/hybridfleet stack

## test: lint, type-check and the whole test suite (what CI runs)
test: lint
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy .

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/python -m pytest -q tests/integration

## faults: the fault tests with their counts printed (docs/reliability.md)
faults: $(STAMP)
	$(BIN)/python -m pytest -q -s tests/faults

## bench: every benchmark of docs/benchmarks.md, one after the other
bench: $(STAMP)
	$(BIN)/python -m bench.edge_throughput
	$(BIN)/python -m bench.batching
	$(BIN)/python -m bench.latency --json bench/results/latency.json
	$(BIN)/python -m bench.accuracy
	$(BIN)/python -m bench.bytes
	$(BIN)/python -m bench.skipping
	$(BIN)/python -m bench.pipelines
	$(BIN)/python -m bench.canary_sim

## models: retrain the digits models and rewrite models/manifest.json
models: $(STAMP)
	$(BIN)/hybridfleet models build

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

## compose-check: build the image, run docker-compose.yml, check every site is answered
## and that it stops cleanly (needs a Docker engine, or dockerd and root; see
## docs/operations.md, "The compose stack"); not part of `make test`
.PHONY: compose-check
compose-check: $(STAMP)
	PYTHON=$(BIN)/python bash deploy/compose-check.sh
