"""Fixtures for the sink's integration tests: a migrated database, the pipeline topics, producing events,
running the loader (in-process or as `mdpipe sink`) and reading every table back as comparable values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from mdpipe.config import Config, PostgresConfig
from schemas import BookDelta, BookSnapshot, Event, Gap, Lifecycle, Ticker, Trade, encode_event

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TABLE_OF: dict[type, str] = {
    BookSnapshot: "orderbook_snapshots",
    BookDelta: "orderbook_deltas",
    Trade: "trades",
    Ticker: "tickers",
    Lifecycle: "market_lifecycle",
    Gap: "coverage_gaps",
}
LATER_COLUMNS = frozenset({"venue", "replaces", "ordinal"})  # event-table columns added since migration 0008
FIELDS: dict[str, tuple[str, ...]] = {
    "orderbook_snapshots": ("market_id", "yes_prices", "yes_counts", "no_prices", "no_counts", "after_keys"),
    "orderbook_deltas": ("market_id", "side", "price", "delta", "replaces", "ordinal"),
    "trades": ("trade_id", "yes_price", "no_price", "count", "taker_side", "taker_book_side", "is_block_trade"),
    "tickers": (
        "market_id",
        "price",
        "yes_bid",
        "yes_ask",
        "yes_bid_size",
        "yes_ask_size",
        "last_trade_size",
        "volume",
        "open_interest",
        "dollar_volume",
        "dollar_open_interest",
    ),
    "market_lifecycle": (
        "event_type",
        "open_ts",
        "close_ts",
        "determination_ts",
        "settled_ts",
        "result",
        "settlement_value",
        "is_deactivated",
        "details",
    ),
    "coverage_gaps": ("conn", "kind", "channel", "markets", "from_at", "to_at", "sid", "missed"),
}
COMMON = ("ts", "venue", "market", "event_key", "gatherer", "received_at")


def _exact(value: Any) -> Any:
    """Comparable form keeping the decimal scale: Decimal('0.4100') != Decimal('0.41') here."""
    if isinstance(value, Decimal):
        return ("dec", str(value))
    if isinstance(value, list):
        return [_exact(v) for v in value]
    return value


def expected_row(ev: Event) -> tuple[str, dict[str, Any]]:
    """(table, column -> value as psycopg returns it) for an event the sink loaded."""
    row: dict[str, Any] = {
        "ts": EPOCH + timedelta(milliseconds=ev.ts_ms),
        "venue": ev.venue,
        "market": ev.market,
        "event_key": ev.event_key,
        "gatherer": ev.gatherer,
        "received_at": EPOCH + timedelta(microseconds=ev.recv_ns // 1000),
    }
    table = TABLE_OF[type(ev)]
    if isinstance(ev, BookSnapshot):
        row.update(
            market_id=ev.market_id,
            yes_prices=[p for p, _ in ev.yes],
            yes_counts=[c for _, c in ev.yes],
            no_prices=[p for p, _ in ev.no],
            no_counts=[c for _, c in ev.no],
            after_keys=list(ev.after_keys),
        )
    elif isinstance(ev, Gap):
        for name in ("conn", "kind", "channel", "markets", "sid", "missed"):
            row[name] = getattr(ev, name)
        row["from_at"] = EPOCH + timedelta(microseconds=ev.from_ns // 1000)
        row["to_at"] = EPOCH + timedelta(microseconds=ev.to_ns // 1000)
    elif isinstance(ev, Lifecycle):
        for name in FIELDS[table]:
            row[name] = getattr(ev, name)
        for name in ("open_ts", "close_ts", "determination_ts", "settled_ts"):
            secs = getattr(ev, name)
            row[name] = None if secs is None else EPOCH + timedelta(seconds=secs)
        row["details"] = json.loads(ev.details) if ev.details else None
    else:
        for name in FIELDS[table]:
            row[name] = getattr(ev, name)
    return table, {k: _exact(v) for k, v in row.items()}


def expected_tables(events: Sequence[Event]) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in FIELDS}
    for ev in events:
        table, row = expected_row(ev)
        out[table][row["event_key"]] = row
    return out


def read_tables(dsn: str, venue: bool = True) -> dict[str, dict[str, dict[str, Any]]]:
    """Every event table as {event_key: row}; raises if an event_key appears twice. ``venue=False``: without the
    columns added since migration 0008 (venue; 0010's replaces, ordinal): a database from before 0008."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    with psycopg.connect(dsn) as conn:
        for table, fields in FIELDS.items():
            cols = tuple(c for c in (*COMMON, *fields) if venue or c not in LATER_COLUMNS)
            rows: dict[str, dict[str, Any]] = {}
            for values in conn.execute(f"SELECT {', '.join(cols)} FROM {table}"):
                row = {c: _exact(v) for c, v in zip(cols, values, strict=True)}
                assert row["event_key"] not in rows, f"{table}: {row['event_key']} loaded twice"
                rows[row["event_key"]] = row
            out[table] = rows
    return out


def write_as_before_venue(dsn: str, scratch_dsn: str, events: Sequence[Event], group: str = "g-old") -> None:
    """Load ``events`` into the database at ``dsn``, whose tables predate the venue column (migration 0008), as the
    sink of that time did: the sink's store loads them into the fully migrated ``scratch_dsn``, and every column
    the old tables have is copied over (binary COPY), so the old tables get rows of their own layout."""
    from sink.batch import Batch, Source
    from sink.migrate import migrate
    from sink.store import Store

    migrate(scratch_dsn, PostgresConfig(timescaledb="off"))
    store = Store(scratch_dsn, group)
    try:
        batch = Batch()
        batch.add_many([Source("events", 0, i, encode_event(e)) for i, e in enumerate(events)])
        result = store.write(batch, lambda dead: None)
        assert not result.dead and not result.duplicates
    finally:
        store.close()
    with psycopg.connect(scratch_dsn) as src, psycopg.connect(dsn) as dst:
        for table in FIELDS:
            names = [
                r[0]
                for r in dst.execute(
                    "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped"
                    " ORDER BY attnum",
                    (table,),
                )
            ]
            assert "venue" not in names, f"{table} already has a venue column"
            cols = ", ".join(names)
            with (
                src.cursor().copy(f"COPY (SELECT {cols} FROM {table}) TO STDOUT (FORMAT BINARY)") as out,  # type: ignore[arg-type]
                dst.cursor().copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT BINARY)") as into,  # type: ignore[arg-type]
            ):
                for data in out:
                    into.write(data)


def table_counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in FIELDS}  # type: ignore[index]


class SinkEnv:
    """One test's topics + database, with helpers to feed and run the sink."""

    def __init__(self, config: Config, tmp: Path) -> None:
        from mdpipe.topics import PartitionMismatchError, ensure_topics, topic_names
        from sink.migrate import migrate

        self.config = config
        self.tmp = tmp
        self.names = topic_names(config)
        for attempt in range(5):  # ensure_topics' own check can race the broker's metadata right after creation
            try:
                ensure_topics(config)
                break
            except PartitionMismatchError:
                if attempt == 4:
                    raise
                time.sleep(0.5)
        migrate(config.postgres.dsn, config.postgres)

    @property
    def dsn(self) -> str:
        return self.config.postgres.dsn

    expected = staticmethod(expected_tables)

    def tables(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Every event table as {event_key: row} (asserts no event_key twice)."""
        return read_tables(self.dsn)

    def counts(self) -> dict[str, int]:
        return table_counts(self.dsn)

    def with_config(self, **sections: Any) -> SinkEnv:
        """A copy whose config has some sections replaced (e.g. postgres=...)."""
        clone = object.__new__(SinkEnv)
        clone.__dict__.update(self.__dict__)
        clone.config = msgspec.structs.replace(self.config, **sections)
        return clone

    def produce(self, events: Sequence[Event], raw: Sequence[tuple[bytes, bytes]] = ()) -> None:
        from confluent_kafka import Producer

        from mdpipe.kafka import producer_config

        producer = Producer(producer_config(self.config.kafka, linger_ms=20, queue_buffering_max_messages=2_000_000))
        for ev in events:
            producer.produce(self.names.events, key=ev.market.encode(), value=encode_event(ev))
            if len(producer) > 100_000:
                producer.poll(0.05)
        for key, value in raw:
            producer.produce(self.names.events, key=key, value=value)
        assert producer.flush(60) == 0

    def produce_markets(self, refs: Sequence[Any]) -> None:
        from confluent_kafka import Producer

        from mdpipe.kafka import producer_config
        from schemas import encode_market

        producer = Producer(producer_config(self.config.kafka))
        for ref in refs:
            producer.produce(self.names.markets, key=ref.ticker.encode(), value=encode_market(ref))
        assert producer.flush(30) == 0

    def loader(self, group: str, **options: Any) -> Any:
        """A Loader of consumer group ``group``: ``from_ms``, ``to_ms`` and ``exit_when_idle`` are its run-time
        arguments, any other option a setting of its ``sink`` section (``batch_rows=500``)."""
        from sink.loader import Loader

        run = {name: options.pop(name) for name in ("from_ms", "to_ms", "exit_when_idle") if name in options}
        sink = msgspec.structs.replace(self.config.sink, group_id=group, **options)
        return Loader(msgspec.structs.replace(self.config, sink=sink), **run)

    def run_loader(self, group: str, **options: Any) -> Any:
        """Run the loader in this process until caught up; returns its LoadStats."""
        return self.loader(group, exit_when_idle=True, **options).run()

    def start_loader_thread(self, group: str, **options: Any) -> tuple[Any, threading.Thread, list[Any]]:
        loader = self.loader(group, **options)
        out: list[Any] = []
        thread = threading.Thread(target=lambda: out.append(loader.run()), daemon=True)
        thread.start()
        return loader, thread, out

    def cli_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MDPIPE_")}
        env.update(
            MDPIPE_KAFKA__BOOTSTRAP_SERVERS=self.config.kafka.bootstrap_servers,
            MDPIPE_KAFKA__TOPIC_PREFIX=self.config.kafka.topic_prefix,
            MDPIPE_KAFKA__PARTITIONS=str(self.config.kafka.partitions),
            MDPIPE_POSTGRES__DSN=self.dsn,
            MDPIPE_RUN_DIR=str(self.tmp / "run"),
            MDPIPE_SINK__IDLE_EXIT_S=str(self.config.sink.idle_exit_s),
            MDPIPE_CONFIG=str(self.tmp / "none.toml"),
        )
        (self.tmp / "none.toml").write_text("")
        return env

    def spawn_cli(self, *args: str, log_name: str = "sink.log") -> subprocess.Popen[bytes]:
        log = open(self.tmp / log_name, "ab")  # noqa: SIM115 - closed with the process by the caller's wait
        return subprocess.Popen(
            [sys.executable, "-m", "mdpipe", "sink", *args], env=self.cli_env(), stdout=log, stderr=log
        )


@pytest.fixture
def make_sink_env(mdpipe_config: Config, tmp_path: Path) -> Callable[..., SinkEnv]:
    """Factory: ``make_sink_env(timescaledb="auto"|"on"|"off", dsn=None)`` -> a migrated SinkEnv."""

    def factory(timescaledb: str = "auto", dsn: str | None = None) -> SinkEnv:
        pg = msgspec.structs.replace(
            mdpipe_config.postgres, timescaledb=timescaledb, dsn=dsn or mdpipe_config.postgres.dsn
        )
        sink = msgspec.structs.replace(mdpipe_config.sink, idle_exit_s=0.5)
        return SinkEnv(msgspec.structs.replace(mdpipe_config, postgres=pg, sink=sink), tmp_path)

    return factory


@pytest.fixture
def sink_env(make_sink_env: Callable[..., SinkEnv]) -> SinkEnv:
    return make_sink_env()


def timescaledb_available(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone() is not None
