# The two commands of the README, and a few more. Each creates .venv if missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint unit integration bench models clean

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

## bench: edge worker throughput against raw ONNX Runtime (see docs/benchmarks.md)
bench: $(STAMP)
	$(BIN)/python -m bench.edge_throughput

## models: retrain the digits models and rewrite models/manifest.json
models: $(STAMP)
	$(BIN)/hybridfleet models build

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
