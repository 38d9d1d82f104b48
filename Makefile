# Ruang: `make run` starts a development server, `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: install run test test-deps lint fuzz bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[test,lint]'
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/ruang serve

test-deps: $(STAMP)
	bash scripts/install-system-deps.sh

test: test-deps
	bash scripts/run-tests.sh $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check server signaling tests
	$(VENV)/bin/ruff format --check server signaling tests || true
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
