# dmchain developer entry points. `make setup` is idempotent: it rebuilds the
# virtual environment only when pyproject.toml changed.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOME_DIR ?= testnet
PBFT ?= 10
POS ?= 8
PYTEST_ARGS ?= -m "not slow"

.PHONY: setup run stop test test-all lint sim bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel setuptools
	# torch first, pinned to the CPU build, so nothing pulls the CUDA wheels.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: setup
	$(BIN)/dmchain run-local --home $(HOME_DIR) --pbft $(PBFT) --pos $(POS)

stop: setup
	$(BIN)/dmchain cluster down --home $(HOME_DIR)

test: setup
	$(BIN)/pytest $(PYTEST_ARGS)

test-all: setup
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy consensus ledger node pre ml bench

sim: setup
	$(BIN)/dmchain sim --pbft $(PBFT) --pos $(POS) --seeds 0:200 --faults all --blocks 50

bench: setup
	$(BIN)/dmchain bench --pbft $(PBFT) --pos $(POS) --out bench-out

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build *.egg-info
