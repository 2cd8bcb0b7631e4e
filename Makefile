# The habits: `make run` (the main job) and `make test` (every test) work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STACK := scripts/stack.sh
SHARED_DATA ?= $(abspath ../shared/data/steam)
export STEAMPRICE_SHARED_DATA ?= $(SHARED_DATA)

.PHONY: venv up down status run demo stop migrate test test-slow test-unit test-faults lint bench clean

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

# Tiers (docs/testing.md): `make test` is every test but the slow tier (unit, agent and
# integration tests, minutes); `make test-slow` is the slow tier (the full real-data replay and
# the fault suite, rebalance scenario included); `make test-unit` needs no stack.
PYTEST := $(PY) -m pytest

# Two test processes: the integration tests mostly wait on the stack and the workers they start
# (each test has its own APP_ID, database and ports), so two share the 2 cores well.
# `--dist worksteal`: a process that runs out of tests takes unstarted ones from the other. The
# default (`load`) hands out a quarter of the suite up front, round robin, and never takes it
# back: one process ran the integration tests for 436 s while the other sat idle after 129 s.
test: venv up
	$(PYTEST) -m "not slow" -n 2 --dist worksteal --durations=15

# -rP: the passing tests' output too, which holds each scenario's measured recovery time.
test-slow: venv up
	$(PYTEST) -m slow -rP --durations=15

# The fault suite alone (the slow tier without the full replay).
test-faults: venv up
	$(PYTEST) -rP --durations=15 tests/integration/test_faults_*.py

test-unit: venv
	$(PYTEST) tests/unit tests/agents

lint: venv
	$(VENV)/bin/ruff check steamprice tests bench
	$(VENV)/bin/ruff format --check steamprice tests bench
	$(VENV)/bin/mypy

bench: venv up
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
