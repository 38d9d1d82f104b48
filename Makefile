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

FUZZ_SECONDS ?= 300
FUZZ_TARGETS ?= messages envelope rooms

# Each atheris target for FUZZ_SECONDS; new inputs go to fuzz/work/<target>/ (the seeds in
# fuzz/corpus/ stay as they are), crashes to fuzz/findings/<target>/.
fuzz: $(STAMP)
	$(PIP) install --quiet -e '.[fuzz]'
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p fuzz/work/$$t fuzz/findings/$$t; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	  $(PY) fuzz/fuzz_$$t.py -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -artifact_prefix=fuzz/findings/$$t/ fuzz/work/$$t fuzz/corpus/$$t || exit 1; \
	done

BENCH_ARGS ?=

# Every section of docs/performance.md (python -m bench: relay and memory against PeerJS, which
# it installs with npm into a temporary directory, call setup, scale-out, the quality ladder).
# Sections with WebRTC need a network namespace: as root they all run, else only the others.
bench: $(STAMP)
	$(PIP) install --quiet -e '.[bench]'
	@if [ "$$(id -u)" -eq 0 ]; then \
	  $(PY) -m bench $(BENCH_ARGS); \
	else \
	  echo "bench: callsetup and fallback need root (network namespaces): sudo make bench"; \
	  $(PY) -m bench --only relay,memory,scaleout $(BENCH_ARGS); \
	fi

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
