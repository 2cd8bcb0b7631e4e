# The habits: `make run` (the main job) and `make test` (every test) work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STACK := scripts/stack.sh
SHARED_DATA ?= $(abspath ../shared/data/steam)
export STEAMPRICE_SHARED_DATA ?= $(SHARED_DATA)

.PHONY: venv up down status run demo stop migrate test test-unit test-faults lint bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

up:
	@$(STACK) up

down:
	@$(STACK) down

status:
	@$(STACK) status

migrate: venv up
	$(VENV)/bin/steamprice migrate

run: venv up
	@scripts/run.sh

demo: venv up
	@DEMO=1 scripts/run.sh

# Stops what `make run` started (the worker and the demo's fake store), by pid.
stop:
	@for p in worker fake-steam; do f=.stack/run/$$p.pid; \
	  if [ -f $$f ] && kill -0 $$(cat $$f) 2>/dev/null; then kill $$(cat $$f); \
	    for i in $$(seq 60); do kill -0 $$(cat $$f) 2>/dev/null || break; sleep 0.5; done; \
	    echo "stopped $$p"; fi; rm -f $$f; done

# The fault-tolerance suite (kills, broker restarts, Steam chaos, fuzzed input, two workers)
# takes minutes on 2 cores, so it has a target of its own; .ci/run runs both.
FAULT_TESTS := tests/integration/test_faults_*.py

test: venv up
	$(PY) -m pytest --ignore-glob='*/integration/test_faults_*'

# -rP: the passing tests' output too, which holds each scenario's measured recovery time.
test-faults: venv up
	$(PY) -m pytest -rP $(FAULT_TESTS)

test-unit: venv
	$(PY) -m pytest tests/unit tests/agents

lint: venv
	$(VENV)/bin/ruff check steamprice tests bench
	$(VENV)/bin/ruff format --check steamprice tests bench
	$(VENV)/bin/mypy

bench: venv up
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
