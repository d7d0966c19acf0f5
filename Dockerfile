# syntax=docker/dockerfile:1
# The mdpipe image: every stage runs as `mdpipe <command>` (gather, dedup, sink, topics, sim, demo, verify, status).
# Stages:
#   build   compilers + the locked runtime dependencies + a regular (non-editable) install of mdpipe, with the C row
#           builder (sink._rowcodec), the partitioner's murmur2 (mdpipe._murmur2), the raw producer's bundling
#           (ingest._bundle), the live frame encoder (schemas._rawframe), the dedup stage's plain later copies
#           (dedup_stream._plaindup) and the venues' accelerators
#           (venues/<name>/_*.c) compiled; the build fails if they were not (setup.py marks them optional;
#           `python -m ops.accelerators` checks)
#   runtime python-slim + that virtualenv only, non-root user 10001, state in /var/lib/mdpipe ($MDPIPE_RUN_DIR:
#           gatherer spools, dedup RocksDB state; mount a volume there). The default target.
#   test    the whole source tree with an editable dev install: `make test` on a host with Docker only runs the
#           suite in it against the compose broker and database (infra/compose.yaml, profile test); with Node 20
#           (copied from the official node image of the same Debian release) and infra/pglite's npm package
#           installed from its lock (`npm ci`), so the TimescaleDB tier (tests/tsdb) runs there instead of skipping
# Build: docker build -t mdpipe:local .   (infra/compose.yaml builds it for every mdpipe service)
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, pinned by requirements.lock: this layer is reused until pyproject.toml or the lock changes.
COPY pyproject.toml setup.py requirements.lock ./
RUN python -m venv /opt/mdpipe \
 && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/runtime-deps.txt \
 && /opt/mdpipe/bin/pip install -c requirements.lock -r /tmp/runtime-deps.txt
COPY README.md ./
COPY mdpipe ./mdpipe
COPY schemas ./schemas
COPY venues ./venues
COPY ingest ./ingest
COPY dedup_stream ./dedup_stream
COPY sink ./sink
COPY venue_sim ./venue_sim
COPY ops ./ops
COPY infra ./infra
COPY bench ./bench
COPY archive ./archive
# A regular install (what `pip install mdpipe` does), then prove the C extensions were compiled and import.
RUN /opt/mdpipe/bin/pip install --no-deps . \
 && cd / && /opt/mdpipe/bin/python -c "import sink._rowcodec; from sink.rowcodec import ACCELERATED, resolve; assert ACCELERATED; resolve('c')" \
 && /opt/mdpipe/bin/python -m ops.accelerators

FROM ${PYTHON_IMAGE} AS test
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev make \
 && rm -rf /var/lib/apt/lists/*
# Node for the TimescaleDB tier (PGlite under Node, infra/pglite_timescale.py): the binary and npm of the official
# image built on the same Debian release as PYTHON_IMAGE (bookworm: the same glibc).
COPY --from=node:20-bookworm-slim /usr/local/bin/node /usr/local/bin/node
COPY --from=node:20-bookworm-slim /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && node --version && npm --version
RUN groupadd --system --gid 10001 mdpipe \
 && useradd --system --uid 10001 --gid mdpipe --home-dir /src --no-create-home --shell /usr/sbin/nologin mdpipe
WORKDIR /src
COPY pyproject.toml setup.py requirements.lock ./
RUN python -m venv /opt/mdpipe && /opt/mdpipe/bin/pip install -c requirements.lock -r requirements.lock
# The PGlite TimescaleDB package, pinned with its integrity hash by the lock (what `make pglite-install` does; its
# stamp file tells make it is done). This layer is reused until the lock changes; .dockerignore keeps a host's
# node_modules out of the context.
COPY infra/pglite/package.json infra/pglite/package-lock.json ./infra/pglite/
RUN cd infra/pglite \
 && npm ci --no-audit --no-fund --cache /tmp/npm-cache \
 && touch node_modules/.mdpipe-installed \
 && rm -rf /tmp/npm-cache
COPY --chown=10001:10001 . ./
# Editable, as `make setup` does on a host: tests read files of the tree (infra/, schemas/, the migrations).
RUN /opt/mdpipe/bin/pip install --no-deps -e . \
 && /opt/mdpipe/bin/python -c "import sink._rowcodec" \
 && chown -R 10001:10001 /src
ENV PATH=/opt/mdpipe/bin:$PATH PYTHONUNBUFFERED=1 MDPIPE_TEST_INFRA=external
USER 10001:10001
CMD ["pytest"]

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 mdpipe \
 && useradd --system --uid 10001 --gid mdpipe --home-dir /var/lib/mdpipe --no-create-home --shell /usr/sbin/nologin mdpipe \
 && install -d -o mdpipe -g mdpipe -m 0750 /var/lib/mdpipe
COPY --from=build /opt/mdpipe /opt/mdpipe
ENV PATH=/opt/mdpipe/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MDPIPE_RUN_DIR=/var/lib/mdpipe
USER 10001:10001
WORKDIR /var/lib/mdpipe
# The final image, as its own user: the compiled extensions import and the CLI starts.
RUN python -c "import sink._rowcodec; from sink.rowcodec import ACCELERATED; assert ACCELERATED" \
 && python -m ops.accelerators \
 && mdpipe --version
# Fixed metrics / health ports (infra/prometheus/prometheus.compose.yml): gatherers g1..g3, dedup, sink, emulator;
# the emulator's venue port.
EXPOSE 9101 9102 9103 9111 9121 9131 8700
ENTRYPOINT ["mdpipe"]
CMD ["--help"]
