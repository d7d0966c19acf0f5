# mdpipe: every entry point a user or CI needs. The virtual environment lives in .venv at the repo root.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: help setup venv infra-install up down status test test-unit lint demo bench-gatherer bench-dedup bench-sink bench-e2e bench-failover bench-sim clean

help:
	@echo "make demo        set up, run the whole pipeline on the emulator, print the verification report"
	@echo "make test        set up, then run the test suite (starts a real Kafka broker and PostgreSQL)"
	@echo "make up / down   start / stop the broker and the database"
	@echo "make bench-*     gatherer | dedup | sink | e2e | failover | sim benchmarks, each ending with RESULT {json}"

$(STAMP): pyproject.toml setup.py sink/_rowcodec.c requirements.lock
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

# Run a command with the broker and database up; stop them afterwards only if this target started them.
WITH_INFRA = started=0; $(BIN)/mdpipe infra status >/dev/null 2>&1 || { $(BIN)/mdpipe infra up >/dev/null && started=1; }; \
	trap 'if [ $$started = 1 ]; then $(BIN)/mdpipe infra down >/dev/null; fi' EXIT;

DEMO_ARGS ?=
demo: setup
	@$(WITH_INFRA) $(BIN)/mdpipe demo $(DEMO_ARGS)

bench-gatherer: setup
	@$(WITH_INFRA) $(BIN)/python -m bench.gatherer $(BENCH_ARGS)

bench-dedup: setup
	@$(WITH_INFRA) $(BIN)/python -m bench.dedup $(BENCH_ARGS)

bench-sink: setup
	@$(WITH_INFRA) $(BIN)/python -m bench.sink $(BENCH_ARGS)

bench-e2e: setup
	@$(WITH_INFRA) $(BIN)/python -m bench.e2e $(BENCH_ARGS)

bench-failover: setup
	@$(WITH_INFRA) $(BIN)/python -m bench.failover $(BENCH_ARGS)

bench-sim: setup
	@$(WITH_INFRA) $(BIN)/python -m bench.sim $(BENCH_ARGS)

clean: down
	rm -rf .run
