"""Time partitions of the event tables in plain PostgreSQL (migration 0005): create ahead, absorb strays, retention.

The four high-volume event tables (:data:`PARTITIONED`) are partitioned by RANGE on ``ts`` in ranges of
``postgres.partition_interval`` aligned to the Unix epoch (UTC), named ``<table>_pYYYYMMDD[_HHMMSS]`` after their
lower bound, plus ``<table>_default`` (rows outside every range: a COPY never fails for a missing partition) and,
after an in-place upgrade, ``<table>_legacy`` (the old table, attached as one range).

:func:`maintain` (``mdpipe sink migrate``, sink start-up, then every ``postgres.partition_check_s`` from
:class:`MaintenanceThread`) makes sure that, per table:

1. the ranges from one interval before now to ``partitions_ahead`` intervals after it exist (a range overlapping
   an existing partition is clipped to the gap, so upgraded and hand-made layouts are respected);
2. rows in the default partition (a clock far off, a replay of old data) move into ranges created for them: the
   default partition is detached, the ranges created, the rows moved, the default re-attached, in one transaction;
3. with ``postgres.retention`` set (off by default), partitions whose upper bound is older than now - retention
   are dropped whole (never the default).

DDL takes an ACCESS EXCLUSIVE lock on the parent, so it waits for the sink's open COPY transaction and the sink's
next COPY waits for it (milliseconds: catalog changes, and the default partition is normally empty). Each table is
handled in its own transaction with ``lock_timeout``: a table whose lock is not granted in time is retried at the
next check. A database whose tables are not partitioned (TimescaleDB mode, or not yet migrated) is left alone.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from prometheus_client import Counter, Gauge
from psycopg import sql

from mdpipe.config import ConfigError, PostgresConfig
from mdpipe.logging import get_logger

__all__ = [
    "PARTITIONED",
    "MaintenanceResult",
    "MaintenanceThread",
    "Partition",
    "bucket",
    "clip",
    "interval_seconds",
    "maintain",
    "partition_name",
    "partitions",
]

log = get_logger(__name__)

PARTITIONED: tuple[str, ...] = ("orderbook_snapshots", "orderbook_deltas", "trades", "tickers")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LOCK_TIMEOUT = "2s"

CREATED = Counter("mdpipe_sink_partitions_created_total", "Time partitions created by the sink", ["table"])
DROPPED = Counter("mdpipe_sink_partitions_dropped_total", "Time partitions dropped by postgres.retention", ["table"])
MOVED = Counter(
    "mdpipe_sink_partition_rows_moved_total", "Rows moved out of a default partition into a proper range", ["table"]
)
DEFAULT_ROWS = Gauge(
    "mdpipe_sink_partition_default_rows",
    "Rows found in a table's default partition at the last check (outside every range; moved by the check)",
    ["table"],
)
FAILURES = Counter(
    "mdpipe_sink_partition_maintenance_failures_total", "Partition checks that failed (retried at the next one)"
)


@dataclass(frozen=True, slots=True)
class Partition:
    name: str
    lower: datetime | None  # None for the default partition
    upper: datetime | None

    @property
    def is_default(self) -> bool:
        return self.lower is None


@dataclass
class MaintenanceResult:
    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    moved: dict[str, int] = field(default_factory=dict)  # table -> rows moved out of its default partition
    skipped: list[str] = field(default_factory=list)  # tables whose lock timed out (retried at the next check)


def interval_seconds(conn: psycopg.Connection[Any], interval: str) -> int:
    """A fixed-length interval (seconds .. weeks) in whole seconds; months and years vary in length: refused."""
    try:
        row = conn.execute(
            "SELECT extract(epoch FROM %(i)s::interval)::bigint, "
            "extract(month FROM %(i)s::interval) <> 0 OR extract(year FROM %(i)s::interval) <> 0",
            {"i": interval},
        ).fetchone()
    except psycopg.DataError:
        raise ConfigError(f"config setting postgres.partition_interval: {interval!r} is not an interval") from None
    assert row is not None
    seconds, calendar = row
    if calendar or seconds < 60:
        raise ConfigError(
            f"config setting postgres.partition_interval: {interval!r} must be a fixed length of at least a minute "
            "(hours, days or weeks; not months or years)"
        )
    return int(seconds)


def bucket(ts: datetime, step_s: int) -> tuple[datetime, datetime]:
    """The aligned range ``[lo, hi)`` of length ``step_s`` holding ``ts``."""
    n = int((ts - EPOCH).total_seconds() // step_s)
    lo = EPOCH + timedelta(seconds=n * step_s)
    return lo, lo + timedelta(seconds=step_s)


def clip(lo: datetime, hi: datetime, existing: Iterable[Partition]) -> list[tuple[datetime, datetime]]:
    """The parts of ``[lo, hi)`` no existing range partition covers."""
    parts = [(lo, hi)]
    for p in existing:
        if p.lower is None or p.upper is None:
            continue
        nxt = []
        for a, b in parts:
            if p.upper <= a or p.lower >= b:
                nxt.append((a, b))
                continue
            if a < p.lower:
                nxt.append((a, p.lower))
            if p.upper < b:
                nxt.append((p.upper, b))
        parts = nxt
    return parts


def partition_name(table: str, lo: datetime) -> str:
    lo = lo.astimezone(UTC)
    stamp = lo.strftime("%Y%m%d") if (lo.hour, lo.minute, lo.second) == (0, 0, 0) else lo.strftime("%Y%m%d_%H%M%S")
    return f"{table}_p{stamp}"


def is_partitioned(conn: psycopg.Connection[Any], table: str) -> bool:
    row = conn.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", (table,)).fetchone()
    return row is not None and row[0] == "p"


def partitions(conn: psycopg.Connection[Any], table: str) -> list[Partition]:
    """The partitions of ``table`` with their bounds, ordered by lower bound (default partition last)."""
    rows = conn.execute(
        """SELECT c.relname, b[1]::timestamptz, b[2]::timestamptz
           FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           LEFT JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                          'FROM \\(''([^'']+)''\\) TO \\(''([^'']+)''\\)') AS b ON true
           WHERE i.inhparent = %s::regclass
           ORDER BY b[1]::timestamptz NULLS LAST""",
        (table,),
    ).fetchall()
    return [Partition(name, lo, hi) for name, lo, hi in rows]


def _columns(conn: psycopg.Connection[Any], table: str) -> sql.Composable:
    names = [
        r[0]
        for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
            "ORDER BY attnum",
            (table,),
        )
    ]
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def _create(conn: psycopg.Connection[Any], table: str, wanted: list[tuple[datetime, datetime]]) -> tuple[list, int]:
    """Create the ranges ``wanted`` (clipped to the gaps, re-read under the lock); rows of the default partition
    inside them are moved in. Runs inside the caller's transaction. Returns (created names, rows moved)."""
    conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(table)))
    existing = partitions(conn, table)
    ranges = sorted({r for lo, hi in wanted for r in clip(lo, hi, existing)})
    if not ranges:
        return [], 0
    default = next((p.name for p in existing if p.is_default), None)
    strays = []
    if default is not None:
        for lo, hi in ranges:
            hit = conn.execute(
                sql.SQL("SELECT 1 FROM {} WHERE ts >= %s AND ts < %s LIMIT 1").format(sql.Identifier(default)),
                (lo, hi),
            ).fetchone()
            if hit:
                strays.append((lo, hi))
    if strays:
        conn.execute(
            sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(sql.Identifier(table), sql.Identifier(default))
        )
    created = []
    for lo, hi in ranges:
        name = partition_name(table, lo)
        conn.execute(  # DDL takes no bind parameters: the bounds are literals
            sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
                sql.Identifier(name), sql.Identifier(table), sql.Literal(lo), sql.Literal(hi)
            )
        )
        created.append(name)
    moved = 0
    if strays:
        cols = _columns(conn, table)
        for lo, hi in strays:
            cur = conn.execute(
                sql.SQL(
                    "WITH m AS (DELETE FROM {d} WHERE ts >= %s AND ts < %s RETURNING {c}) INSERT INTO {t} ({c}) "
                    "SELECT {c} FROM m"
                ).format(d=sql.Identifier(default), t=sql.Identifier(table), c=cols),
                (lo, hi),
            )
            moved += max(cur.rowcount, 0)
        conn.execute(
            sql.SQL("ALTER TABLE {} ATTACH PARTITION {} DEFAULT").format(sql.Identifier(table), sql.Identifier(default))
        )
    return created, moved


def _stray_ranges(
    conn: psycopg.Connection[Any], table: str, step_s: int
) -> tuple[int, list[tuple[datetime, datetime]]]:
    """Rows in ``table``'s default partition, and the aligned ranges holding them."""
    default = next((p.name for p in partitions(conn, table) if p.is_default), None)
    if default is None:
        return 0, []
    rows = conn.execute(
        sql.SQL(
            "SELECT floor(extract(epoch FROM ts) / %s)::bigint AS n, count(*) FROM {} GROUP BY n ORDER BY n"
        ).format(sql.Identifier(default)),
        (step_s,),
    ).fetchall()
    total = sum(int(c) for _, c in rows)
    ranges = [
        (EPOCH + timedelta(seconds=int(n) * step_s), EPOCH + timedelta(seconds=(int(n) + 1) * step_s)) for n, _ in rows
    ]
    return total, ranges


def maintain(conn: psycopg.Connection[Any], pg: PostgresConfig, now: datetime | None = None) -> MaintenanceResult:
    """One check of every partitioned event table (module docstring). ``conn`` must be in autocommit mode."""
    now = now or datetime.now(UTC)
    result = MaintenanceResult()
    step_s = interval_seconds(conn, pg.partition_interval)
    keep_s = interval_seconds_any(conn, pg.retention) if pg.retention and pg.retention != "off" else None
    for table in PARTITIONED:
        if not is_partitioned(conn, table):
            continue
        try:
            with conn.transaction():
                conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
                strays, stray_ranges = _stray_ranges(conn, table, step_s)
                DEFAULT_ROWS.labels(table).set(strays)
                first, _ = bucket(now - timedelta(seconds=step_s), step_s)
                ahead = [
                    (first + timedelta(seconds=i * step_s), first + timedelta(seconds=(i + 1) * step_s))
                    for i in range(pg.partitions_ahead + 2)
                ]
                existing = partitions(conn, table)
                wanted = [r for r in [*ahead, *stray_ranges] if clip(*r, existing)]
                if wanted:
                    created, moved = _create(conn, table, wanted)
                    result.created += created
                    if moved:
                        result.moved[table] = moved
                        MOVED.labels(table).inc(moved)
                    CREATED.labels(table).inc(len(created))
                if keep_s is not None:
                    horizon = now - timedelta(seconds=keep_s)
                    for p in partitions(conn, table):
                        if p.upper is not None and p.upper <= horizon:
                            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(p.name)))
                            result.dropped.append(p.name)
                            DROPPED.labels(table).inc()
        except psycopg.errors.LockNotAvailable:
            log.warning("partition_lock_timeout", table=table, retry_s=pg.partition_check_s)
            result.skipped.append(table)
    if result.created or result.dropped or result.moved:
        log.info("partitions_maintained", created=result.created, dropped=result.dropped, moved=result.moved)
    return result


def interval_seconds_any(conn: psycopg.Connection[Any], interval: str) -> int:
    """``postgres.retention`` in seconds (a month counts 30 days, as PostgreSQL's epoch of an interval does)."""
    try:
        row = conn.execute("SELECT extract(epoch FROM %s::interval)::bigint", (interval,)).fetchone()
    except psycopg.DataError:
        raise ConfigError(f"config setting postgres.retention: {interval!r} is not an interval or 'off'") from None
    assert row is not None
    if row[0] <= 0:
        raise ConfigError(f"config setting postgres.retention: {interval!r} must be positive (or 'off')")
    return int(row[0])


class MaintenanceThread:
    """Runs :func:`maintain` at once, then every ``postgres.partition_check_s``, on its own connection, until
    :meth:`stop`."""

    def __init__(self, dsn: str, pg: PostgresConfig) -> None:
        self._dsn, self._pg = dsn, pg
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sink-partitions", daemon=True)

    def start(self) -> MaintenanceThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            try:
                with psycopg.connect(self._dsn, autocommit=True) as conn:
                    maintain(conn, self._pg)
            except Exception as exc:  # the check must keep running: the sink never depends on it
                FAILURES.inc()
                log.warning("partition_check_failed", error=str(exc).strip()[:300], retry_s=self._pg.partition_check_s)
            if self._stop.wait(self._pg.partition_check_s):
                return
