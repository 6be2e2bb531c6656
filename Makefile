# Thin targets; every one that needs Python builds its own virtualenv first.
PYTHON ?= python3
VENV ?= .venv
DJANGO ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST := $(BIN)/python -m pytest

.DEFAULT_GOAL := help
.PHONY: help install demo test test-sqlite test-postgres cov lint format typecheck bench build

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,dev]' $(if $(DJANGO),'$(DJANGO)')
	touch $@

install: $(STAMP)  ## create the virtualenv (.venv) and install the package with its test and dev extras

demo: install  ## run the example project end to end on SQLite (ARGS=--serve keeps it up)
	$(BIN)/python examples/polls/demo.py $(ARGS)

# Both halves run even when the first fails; the target fails if either did.
test: install  ## run the whole suite on SQLite, then on PostgreSQL
	@failed=; \
	$(MAKE) --no-print-directory test-sqlite || failed="$$failed SQLite"; \
	$(MAKE) --no-print-directory test-postgres || failed="$$failed PostgreSQL"; \
	if [ -n "$$failed" ]; then echo "make test: failed on$$failed" >&2; exit 1; fi

test-sqlite: install  ## the suite on SQLite only
	$(PYTEST) -m "not postgres" $(ARGS)

test-postgres: install  ## the suite on PostgreSQL only (PGHOST, PGPORT, PGUSER, ...)
	DATABASE=postgres $(PYTEST) -m "not sqlite_only" $(ARGS)

cov: install  ## the suite on SQLite with a branch-coverage report
	$(PYTEST) -m "not postgres" --cov --cov-report=term-missing $(ARGS)

lint: install  ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install  ## ruff fix and format
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: install  ## mypy on the package
	$(BIN)/mypy django_cloudevents_bridge

bench: install  ## measured ratios, side by side in one run (see README, Performance)
	$(BIN)/python -m bench $(ARGS)
	$(BIN)/python -m bench.receive
	$(BIN)/python -m bench.filters
	$(BIN)/python -m bench.notify
	$(BIN)/python -m bench.watches
	$(BIN)/python -m bench.rendering
	$(BIN)/python -m bench.subscriptions

build: install  ## sdist and wheel into dist/
	$(BIN)/python -m pip wheel --no-deps -w dist .
