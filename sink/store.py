"""Writes one :class:`sink.batch.Batch` into PostgreSQL in ONE transaction: rows (binary COPY), market upserts
and the consumed offsets (``sink_offsets``) — so the database holds each event once, whatever Kafka redelivers.

Fast path: COPY every table directly (a table in :attr:`Store.staging` through staging instead, below; then alias
delta records raise their rows' ordinals, :mod:`sink.ordinals`; ``market_lifecycle`` rows by any of their keys
instead, last: :mod:`sink.lifecycle`), commit. Only when that fails,
the transaction again, each table's COPY in a savepoint (the table whose COPY failed is not tried again: the same
rows fail the same way), and a table whose COPY fails:
- unique violation (a re-delivered event): goes through a temp staging table and
  ``INSERT ... ON CONFLICT DO NOTHING`` (duplicates absorbed and counted);
- a row the database rejects (constraint, encoding, bad JSON): the table's rows are bisected in savepoints
  down to the offending rows, which become dead letters (handed to ``on_dead`` before the commit).
Re-delivered events come in runs (a dedup worker re-emits what it decided since its last commit when it restarts; a
replay), so a table whose staged batch held duplicates (rows already stored, or repeated within the batch) goes straight
to staging in the next batches, inside the first transaction, until one of its staged batches holds none: a batch in
such a run costs one staging pass instead of a COPY that fails, a rollback and a second failing COPY (unless another
table's COPY fails in the same batch). ``sink_staging`` is logged when a table enters or leaves staging.
Connection errors propagate (``psycopg.OperationalError``): the loader backs off and retries the same batch.
A database host that disappears without resetting the connection is noticed through TCP keepalives and
``tcp_user_timeout`` (:func:`connect_options`); :attr:`Store.busy_since` lets /healthz report a call stuck meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
import psycopg
from psycopg import errors

from mdpipe.config import SinkConfig
from mdpipe.logging import get_logger
from schemas import DeadLetter, MarketRef
from sink.batch import Batch, Message, dead_letter
from sink.lifecycle import TABLE as LIFECYCLE
from sink.lifecycle import apply_lifecycle
from sink.markets_seen import MarketsSeen
from sink.ordinals import raise_ordinals
from sink.rows import COLUMNS, DELTA_ALIASES, copy_buffer, copy_sql

__all__ = ["Store", "WriteResult", "connect_options"]

log = get_logger(__name__)
REJECTED = (psycopg.DataError, psycopg.IntegrityError)
_APART = frozenset({LIFECYCLE, DELTA_ALIASES})  # applied from staging tables, after every other table's rows

_MARKET_SQL = """INSERT INTO markets (ticker, venue, event_ticker, market_id, title, status, open_time, close_time,
    price_level_structure, price_ranges, updated_at, updated_ns)
VALUES (%s, %s, %s, %s, %s, %s, to_timestamp(%s / 1000.0), to_timestamp(%s / 1000.0), %s, %s::jsonb,
    to_timestamp(%s / 1e9), %s)
ON CONFLICT (venue, ticker) DO UPDATE SET event_ticker = EXCLUDED.event_ticker,
    market_id = EXCLUDED.market_id, title = EXCLUDED.title, status = EXCLUDED.status,
    open_time = EXCLUDED.open_time, close_time = EXCLUDED.close_time,
    price_level_structure = EXCLUDED.price_level_structure, price_ranges = EXCLUDED.price_ranges,
    updated_at = EXCLUDED.updated_at, updated_ns = EXCLUDED.updated_ns, loaded_at = clock_timestamp()
WHERE markets.updated_ns <= EXCLUDED.updated_ns"""

_OFFSETS_SQL = """INSERT INTO sink_offsets (group_id, topic, partition, next_offset) VALUES {}
ON CONFLICT (group_id, topic, partition) DO UPDATE
SET next_offset = GREATEST(sink_offsets.next_offset, EXCLUDED.next_offset), updated_at = now()"""


def connect_options(sink: SinkConfig) -> dict[str, int]:
    """libpq connection parameters that break a connection to a vanished database host: keepalive probes on an
    idle wait, ``tcp_user_timeout`` on unacknowledged sends."""
    return {
        "keepalives": 1,
        "keepalives_idle": sink.db_keepalives_idle_s,
        "keepalives_interval": sink.db_keepalives_interval_s,
        "keepalives_count": sink.db_keepalives_count,
        "tcp_user_timeout": sink.db_tcp_user_timeout_ms,
    }


@dataclass
class WriteResult:
    rows: dict[str, int] = field(default_factory=dict)  # rows inserted per table
    duplicates: int = 0  # rows already present (absorbed by the unique key)
    dead: list[DeadLetter] = field(default_factory=list)  # rejected rows + undecodable records
    slow_path: bool = False
    markets: int = 0
    markets_unchanged: int = 0  # market references skipped: their row already holds them (sink.markets_seen)
    aliases: int = 0  # lifecycle alias records applied (keys added to a row, sink.lifecycle)
    delta_aliases: int = 0  # alias delta records applied (sink.ordinals)
    ordinals_raised: int = 0  # rows whose ordinal they raised
    stored_markets: list[tuple[tuple[str, str], MarketRef]] = field(default_factory=list)  # upserted here, timeless


class Store:
    """The sink's database connection. Not thread-safe; one per loader."""

    def __init__(
        self,
        dsn: str,
        group_id: str,
        connect_timeout: float = 5.0,
        options: Mapping[str, int] | None = None,
        markets_seen: MarketsSeen | None = None,
    ) -> None:
        self.dsn = dsn
        self.markets_seen = markets_seen if markets_seen is not None else MarketsSeen()  # shared by a sink's lanes
        self.group_id = group_id
        self.connect_timeout = connect_timeout
        self.options = dict(options or {})  # extra libpq parameters (:func:`connect_options`)
        self.busy_since = 0.0  # monotonic start of the database call in flight (0: none); read by /healthz
        # tables whose last staged batch held duplicates: their next batches are staged at once (module docstring)
        self.staging: set[str] = set()
        self._conn: psycopg.Connection[Any] | None = None

    @property
    def conn(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(
                self.dsn, autocommit=True, connect_timeout=int(self.connect_timeout), **self.options
            )
            self._conn.execute("SET synchronous_commit = on")
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def healthy(self) -> bool:
        return self._conn is not None and not self._conn.closed and not self._conn.broken

    def read_offsets(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        """Stored next offsets of this group for ``topic`` (partitions without one are absent)."""
        self.busy_since = time.monotonic()
        try:
            rows = self.conn.execute(
                "SELECT partition, next_offset FROM sink_offsets"
                " WHERE group_id = %s AND topic = %s AND partition = ANY(%s)",
                (self.group_id, topic, list(partitions)),
            ).fetchall()
        finally:
            self.busy_since = 0.0
        return {int(p): int(o) for p, o in rows}

    def write(self, batch: Batch, on_dead: Callable[[list[DeadLetter]], None]) -> WriteResult:
        """Commit ``batch`` (rows, markets, offsets) exactly once; ``on_dead`` runs before the commit."""
        self.busy_since = time.monotonic()
        try:
            result = self._write(batch, on_dead)
        finally:
            self.busy_since = 0.0
        if result.stored_markets:  # committed: later identical references of these markets are skipped
            self.markets_seen.remember(result.stored_markets)
        return result

    def _write(self, batch: Batch, on_dead: Callable[[list[DeadLetter]], None]) -> WriteResult:
        conn = self.conn
        failed = ""  # the table whose COPY raised, if one did
        try:
            with conn.transaction():
                result = WriteResult(dead=list(batch.dead))
                for table, rows in batch.rows.items():
                    if not rows or table in _APART:
                        continue
                    if table in self.staging:
                        self._staged(conn, table, rows, batch, result)
                        continue
                    failed = table
                    self._copy(conn, table, table, rows)
                    failed = ""
                    result.rows[table] = len(rows)
                self._aliases(conn, batch, result)
                self._lifecycle(conn, batch, result)
                self._finish(conn, batch, result, on_dead)
            return result
        except REJECTED as exc:
            where = {"table": failed} if failed else {}
            log.info("batch_slow_path", reason=type(exc).__name__, sqlstate=exc.sqlstate, **where)
        with conn.transaction():
            result = WriteResult(dead=list(batch.dead), slow_path=True)
            for table, rows in batch.rows.items():
                if not rows or table in _APART:
                    continue
                if table != failed and table not in self.staging:
                    try:
                        with conn.transaction():
                            self._copy(conn, table, table, rows)
                        result.rows[table] = len(rows)
                        continue
                    except errors.UniqueViolation:
                        pass
                    except REJECTED:
                        pass
                self._staged(conn, table, rows, batch, result)
            self._aliases(conn, batch, result)
            self._lifecycle(conn, batch, result)
            self._finish(conn, batch, result, on_dead)
        return result

    def _staged(
        self, conn: psycopg.Connection[Any], table: str, rows: list[bytes], batch: Batch, result: WriteResult
    ) -> None:
        """``table``'s rows through staging (:meth:`_careful`); the table stays in :attr:`staging` while its staged
        batches hold duplicates."""
        before = result.duplicates
        self._careful(conn, table, rows, lambda: batch.sources_of(table), result)
        result.slow_path = True
        if result.duplicates > before and table not in self.staging:
            self.staging.add(table)
            log.info("sink_staging", table=table, staged=True)
        elif result.duplicates == before and table in self.staging:
            self.staging.discard(table)
            log.info("sink_staging", table=table, staged=False)

    @staticmethod
    def _aliases(conn: psycopg.Connection[Any], batch: Batch, result: WriteResult) -> None:
        """Alias delta records raise their rows' ordinals (:mod:`sink.ordinals`): after every table's rows."""
        rows = batch.rows.get(DELTA_ALIASES)
        if not rows:
            return
        raised, dead = raise_ordinals(conn, rows, lambda: batch.sources_of(DELTA_ALIASES))
        result.delta_aliases += len(rows) - len(dead)
        result.ordinals_raised += raised
        result.dead += dead

    @staticmethod
    def _lifecycle(conn: psycopg.Connection[Any], batch: Batch, result: WriteResult) -> None:
        """Lifecycle rows by any of their keys (:mod:`sink.lifecycle`): after every other table (see there)."""
        rows = batch.rows.get(LIFECYCLE)
        if not rows:
            return
        stored, duplicates, aliases, dead = apply_lifecycle(conn, rows, lambda: batch.sources_of(LIFECYCLE))
        if stored:
            result.rows[LIFECYCLE] = result.rows.get(LIFECYCLE, 0) + stored
        result.duplicates += duplicates
        result.aliases += aliases
        result.dead += dead

    # -- pieces of the transaction ---------------------------------------------------------------------

    @staticmethod
    def _copy(conn: psycopg.Connection[Any], table: str, target: str, rows: list[bytes]) -> None:
        with conn.cursor() as cur, cur.copy(copy_sql(table, target)) as copy:
            copy.write(copy_buffer(table, rows))

    def _careful(
        self,
        conn: psycopg.Connection[Any],
        table: str,
        rows: list[bytes],
        sources: Callable[[], list[Message]],
        result: WriteResult,
    ) -> None:
        """Staging table + ON CONFLICT DO NOTHING; bisect down to the rejected rows. ``sources`` gives the message of
        each row, only asked for when a row is rejected (it decodes the batch's messages again)."""
        found: list[Message] = []
        stage = f"stage_{table}"
        conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
        cols = ", ".join(COLUMNS[table])
        pending = [(0, len(rows))]
        while pending:
            lo, hi = pending.pop()
            if hi <= lo:
                continue
            try:
                with conn.transaction():
                    conn.execute(f"TRUNCATE {stage}")
                    self._copy(conn, table, stage, rows[lo:hi])
                    cur = conn.execute(
                        f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage} ON CONFLICT DO NOTHING"
                    )
                    inserted = max(cur.rowcount, 0)
                result.rows[table] = result.rows.get(table, 0) + inserted
                result.duplicates += (hi - lo) - inserted
            except REJECTED as exc:
                if hi - lo == 1:
                    reason = f"{table}: rejected by the database ({exc.sqlstate}): {str(exc).strip().splitlines()[0]}"
                    found = found or sources()
                    result.dead.append(dead_letter(reason, found[lo]))
                    continue
                mid = (lo + hi) // 2
                pending += [(mid, hi), (lo, mid)]

    def _finish(
        self,
        conn: psycopg.Connection[Any],
        batch: Batch,
        result: WriteResult,
        on_dead: Callable[[list[DeadLetter]], None],
    ) -> None:
        if batch.markets:
            self._upsert_markets(conn, batch, result)
        if batch.offsets:
            values = []
            params: list[Any] = []
            for (topic, partition), next_offset in batch.offsets.items():
                values.append("(%s, %s, %s, %s)")
                params += [self.group_id, topic, partition, next_offset]
            conn.execute(_OFFSETS_SQL.format(", ".join(values)), params)  # type: ignore[arg-type]
        if result.dead:
            on_dead(result.dead)

    @staticmethod
    def _market_params(ref: Any) -> tuple[Any, ...]:
        return (
            ref.ticker,
            ref.venue,
            ref.event_ticker,
            ref.market_id,
            ref.title,
            ref.status,
            ref.open_time_ms,
            ref.close_time_ms,
            ref.price_level_structure,
            ref.price_ranges or None,
            ref.updated_ns,
            ref.updated_ns,
        )

    def _upsert_markets(self, conn: psycopg.Connection[Any], batch: Batch, result: WriteResult) -> None:
        seen = self.markets_seen
        items = []
        for key, (ref, src) in batch.markets.items():
            timeless = msgspec.structs.replace(ref, updated_ns=0)  # copies differ in their gatherer's time only
            if seen.changed(key, timeless):
                items.append((key, timeless, self._market_params(ref), src))
        result.markets_unchanged += len(batch.markets) - len(items)
        if not items:
            return
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(_MARKET_SQL, [params for _, _, params, _ in items])
            result.markets += len(items)
            result.stored_markets += [(key, timeless) for key, timeless, _, _ in items]
            return
        except REJECTED:
            pass
        for key, timeless, params, src in items:
            try:
                with conn.transaction():
                    conn.execute(_MARKET_SQL, params)
                result.markets += 1
                result.stored_markets.append((key, timeless))
            except REJECTED as exc:
                reason = f"markets: rejected by the database ({exc.sqlstate}): {str(exc).strip().splitlines()[0]}"
                result.dead.append(dead_letter(reason, src))
