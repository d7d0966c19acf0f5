# mdpipe: every entry point a user or CI needs. The virtual environment lives in .venv at the repo root.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: help setup venv infra-install up down status test test-unit lint demo bench-gatherer bench-dedup bench-sink bench-e2e bench-sim clean

help:
	@echo "make demo        set up, run the whole pipeline on the emulator, print the verification report"
	@echo "make test        set up, then run the test suite (starts a real Kafka broker and PostgreSQL)"
	@echo "make up / down   start / stop the broker and the database"
	@echo "make bench-*     gatherer | dedup | sink | e2e | sim benchmarks, each ending with RESULT {json}"

$(STAMP): pyproject.toml requirements.lock
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.lock -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Kafka jars (Maven Central) and PostgreSQL (apt) when missing; idempotent.
infra-install: $(STAMP)
	$(BIN)/mdpipe infra install

setup: venv infra-install

# Compose (Redpanda + TimescaleDB) where a Docker engine answers, else native Kafka (KRaft) + PostgreSQL.
# Either way the addresses land in .run/infra.json, where every mdpipe command finds them.
up: setup
	@if docker info >/dev/null 2>&1; then $(BIN)/mdpipe infra up --docker; \
	else $(BIN)/mdpipe infra up; fi

down:
	@if [ -x $(BIN)/mdpipe ]; then \
	  if docker info >/dev/null 2>&1; then $(BIN)/mdpipe infra down --docker; fi; \
	  $(BIN)/mdpipe infra down; fi

status: venv
	$(BIN)/mdpipe infra status

test: setup
	$(BIN)/ruff check .
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: venv
	$(BIN)/pytest -m "not integration and not e2e" $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

demo: setup
	$(BIN)/mdpipe demo

bench-gatherer: setup
	$(BIN)/python -m bench.gatherer

bench-dedup: setup
	$(BIN)/python -m bench.dedup

bench-sink: setup
	$(BIN)/python -m bench.sink

bench-e2e: setup
	$(BIN)/python -m bench.e2e

bench-sim: setup
	$(BIN)/python -m bench.sim

clean: down
	rm -rf .run
