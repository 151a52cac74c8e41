# Two commands on a fresh machine: `make run` (start with demo data) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/reprisals db upgrade
	$(BIN)/reprisals demo --if-empty
	$(BIN)/reprisals run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy workflow notifications reprisals web
	$(BIN)/lint-imports

test: $(STAMP) lint
	# Two workers: most of a test's time is spent waiting (fsync, PostgreSQL, the browser, subprocesses).
	$(BIN)/python -m pytest -q -n 2

bench: $(STAMP)
	$(BIN)/python -m tests.bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
