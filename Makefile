# The two commands: `make run` starts the whole system, `make test` runs the suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint format typecheck
run: $(VENV)/.installed
	$(BIN)/python -m portal.stack run

test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DEBUG=true $(BIN)/mypy .
	$(BIN)/python -m portal.stack test

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy's Django plugin loads the settings, which need DEBUG (or a SECRET_KEY).
typecheck: $(VENV)/.installed-dev
	DEBUG=true $(BIN)/mypy .

format: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Reinstall only when a dependency list changed, so a second run starts in seconds.
$(VENV)/.installed: $(BIN)/python pyproject.toml cli/pyproject.toml
	$(BIN)/python -m pip install -q -e . -e ./cli
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@
