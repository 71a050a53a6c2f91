# The two commands: `make run` (set up + start the gateway), `make test` (set up + run the tests).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

.PHONY: install run test lint bench
install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/gateway serve

test: $(STAMP)
	bash scripts/install-system-deps.sh
	$(VENV)/bin/ruff check proxy mockupstream tests loadtests
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -p no:cacheprovider --cov=proxy --cov-report=term:skip-covered --cov-fail-under=90 $(PYTEST_ARGS)
	$(PY) -m coverage report --include=proxy/metering/pricing.py --show-missing --fail-under=100

lint: $(STAMP)
	$(VENV)/bin/ruff check proxy mockupstream tests loadtests
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	bash scripts/install-system-deps.sh bench
	$(PY) loadtests/benchmark.py
