"""Versioned, idempotent schema migrations for the sink (``mdpipe sink migrate``; also run at sink start-up).

``sink/migrations/NNNN_name[.plain|.timescale].sql``: files without a variant always apply; a ``.plain`` or
``.timescale`` file applies only in that mode. Applied versions are recorded in ``schema_migrations``
(version, name, variant); everything runs in one transaction under an advisory lock, so concurrent sinks
starting together migrate once. The mode (``postgres.timescaledb``: auto|on|off) is fixed by the first
migration of a database. In TimescaleDB mode the configurable policies (chunk interval, compression,
retention) are re-applied on every run so a changed setting takes effect. ``{{venue}}`` in a migration is the
venue the database's existing rows came from (``venue.name`` of the configuration, passed as ``venue``; NULL when
not given, see 0008). Event tables whose key columns do not compare bytes (the database's default collation, unless
a column has its own) get a warning (:mod:`sink.collation`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg import sql

from mdpipe.config import ConfigError, PostgresConfig
from mdpipe.logging import get_logger
from sink.collation import Collation, bytewise, key_collations
from sink.partitions import interval_seconds, maintain
from sink.rows import TABLES

# market_lifecycle stays a plain table (a few rows per market): its unique key is event_key alone (0003); so does
# coverage_gaps (a few rows per gatherer outage, 0004).
HYPERTABLES: tuple[str, ...] = tuple(t for t in TABLES if t not in ("market_lifecycle", "coverage_gaps"))

__all__ = ["MigrateResult", "Migration", "discover", "migrate", "resolve_mode"]

log = get_logger(__name__)
Mode = Literal["plain", "timescale"]
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(plain|timescale))?\.sql$")
_LOCK_KEY = 0x6D647069  # "mdpi"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    variant: str | None
    path: Path

    def sql_text(self, pg: PostgresConfig, venue: str | None = None) -> str:
        text = self.path.read_text()
        text = text.replace("{{venue}}", "NULL" if venue is None else _literal(venue))
        text = text.replace("{{partition_interval}}", f"INTERVAL '{_interval(pg.partition_interval)}'")
        return text.replace("{{chunk_interval}}", f"INTERVAL '{_interval(pg.chunk_interval)}'")


@dataclass(frozen=True)
class MigrateResult:
    mode: Mode
    applied: list[int]


def _interval(value: str) -> str:
    if not re.fullmatch(r"[0-9a-zA-Z :.]+", value):
        raise ConfigError(f"config setting postgres: interval {value!r} must look like '1 hour' or '7 days'")
    return value


def _literal(value: str) -> str:
    """A venue name as a SQL string literal (it lands inside a DO $$ ... $$ body, so only plain names pass)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
        raise ConfigError(f"config setting venue.name: {value!r} must be letters, digits, '_', '.' or '-'")
    return f"'{value}'"


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """All migration files, ordered by version then name."""
    out = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file {path.name}: expected NNNN_name[.plain|.timescale].sql")
        out.append(Migration(int(match.group(1)), match.group(2), match.group(3), path))
    return out


def resolve_mode(conn: psycopg.Connection[Any], setting: str) -> Mode:
    """'timescale' when the extension is wanted and usable, else 'plain' (``on`` without it is an error)."""
    if setting == "off":
        return "plain"
    available = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    if not available:
        if setting == "on":
            raise ConfigError("config setting postgres.timescaledb: 'on' but the extension is not installed")
        return "plain"
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error as exc:
        if setting == "on":
            msg = f"config setting postgres.timescaledb: 'on' but CREATE EXTENSION failed ({exc})"
            raise ConfigError(msg) from None
        log.warning("timescaledb_unusable", error=str(exc).strip())
        return "plain"
    return "timescale"


def _apply_policies(conn: psycopg.Connection[Any], pg: PostgresConfig) -> None:
    chunk = _interval(pg.chunk_interval)
    for table in HYPERTABLES:
        ident = sql.Literal(table)
        conn.execute(sql.SQL("SELECT set_chunk_time_interval({}, {}::interval)").format(ident, chunk))
        conn.execute(sql.SQL("SELECT remove_compression_policy({}, if_exists => true)").format(ident))
        if pg.compress_after and pg.compress_after != "off":
            after = _interval(pg.compress_after)
            conn.execute(
                sql.SQL("SELECT add_compression_policy({}, compress_after => {}::interval)").format(ident, after)
            )
        conn.execute(sql.SQL("SELECT remove_retention_policy({}, if_exists => true)").format(ident))
        if pg.retention and pg.retention != "off":
            keep = _interval(pg.retention)
            conn.execute(sql.SQL("SELECT add_retention_policy({}, drop_after => {}::interval)").format(ident, keep))


def _slow_key_collations(conn: psycopg.Connection[Any]) -> list[Collation]:
    """The event tables' key collations that are not byte order (:mod:`sink.collation`); advisory: a catalog read
    that fails is logged, never a failed migration."""
    try:
        return [c for c in key_collations(conn, HYPERTABLES) if not bytewise(c)]
    except psycopg.Error as exc:
        log.warning("collation_check_failed", error=str(exc).strip()[:300])
        return []


def migrate(dsn: str, pg: PostgresConfig, venue: str | None = None) -> MigrateResult:
    """Apply the pending migrations to the database at ``dsn``; safe to run any number of times. ``venue``: the venue
    the rows already in the database came from (the configuration's ``venue.name``), for migrations that add it."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET client_min_messages = warning")
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version integer NOT NULL, name text NOT NULL,"
                " variant text NOT NULL DEFAULT '', applied_at timestamptz NOT NULL DEFAULT now(),"
                " PRIMARY KEY (version, variant))"
            )
            done = {(v, var) for v, var in conn.execute("SELECT version, variant FROM schema_migrations")}
            recorded = {var for _, var in done if var}
            mode: Mode
            if recorded:
                mode = "timescale" if "timescale" in recorded else "plain"
                if pg.timescaledb == "on" and mode == "plain":
                    log.warning("timescaledb_setting_ignored", reason="database was first migrated in plain mode")
            else:
                mode = resolve_mode(conn, pg.timescaledb)
            if mode == "plain":
                interval_seconds(conn, pg.partition_interval)  # refuse a bad setting before any change
            applied = []
            done_versions = {v for v, _ in done}
            for mig in discover():
                if mig.variant not in (None, mode):
                    continue
                if (mig.version, mig.variant or "") in done or (mig.variant is None and mig.version in done_versions):
                    continue
                conn.execute(mig.sql_text(pg, venue))  # type: ignore[arg-type]
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, variant) VALUES (%s, %s, %s)",
                    (mig.version, mig.name, mig.variant or ""),
                )
                applied.append(mig.version)
            if mode == "timescale":
                _apply_policies(conn, pg)
        if mode == "plain":
            maintain(conn, pg)  # partitions around now (sink.partitions); retention
        slow = _slow_key_collations(conn)
    log.info("migrated", mode=mode, applied=applied)
    if slow:
        log.warning(
            "database_collation_not_bytewise",
            collation=",".join(c.name for c in slow),
            cost="every row's unique-key insert compares its text keys through the locale: more database CPU per row",
            fix="a database created with LOCALE_PROVIDER libc LOCALE 'C' TEMPLATE template0 (docs/data-layer.md)",
        )
    return MigrateResult(mode, applied)
