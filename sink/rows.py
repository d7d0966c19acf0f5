"""Binary COPY rows for the five event tables, built from :mod:`sink.records` (pure, no I/O).

A row is kept WITHOUT its leading field count (the same for every row of a table), so :func:`copy_buffer`
frames a whole batch with one ``bytes.join``. ``loaded_at`` is left to its DEFAULT ``clock_timestamp()``
(measured in ``make bench-sink``: no slower than sending one value per batch, and it is the real insert time);
``copy_buffer(..., loaded_at=...)`` with ``copy_sql(..., with_loaded_at=True)`` sends it explicitly instead.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

from sink.pgbinary import (
    COPY_HEADER,
    COPY_TRAILER,
    NULL,
    NUMERIC_CACHE,
    PG_EPOCH_MS,
    boolean,
    int8,
    jsonb,
    numeric,
    numeric_array,
    opt_numeric,
    text,
    ts_from_s,
)
from sink.records import RecBase, RecDelta, RecLifecycle, RecSnapshot, RecTicker, RecTrade

__all__ = [
    "BUILDERS",
    "COLUMNS",
    "COMMON_COLUMNS",
    "TABLES",
    "TABLE_BY_TYPE",
    "build_row",
    "copy_buffer",
    "copy_sql",
    "loaded_at_field",
]

COMMON_COLUMNS = ("ts", "market", "event_key", "gatherer", "received_at")

COLUMNS: dict[str, tuple[str, ...]] = {
    "orderbook_snapshots": (*COMMON_COLUMNS, "market_id", "yes_prices", "yes_counts", "no_prices", "no_counts"),
    "orderbook_deltas": (*COMMON_COLUMNS, "market_id", "side", "price", "delta"),
    "trades": (
        *COMMON_COLUMNS,
        "trade_id",
        "yes_price",
        "no_price",
        "count",
        "taker_side",
        "taker_book_side",
        "is_block_trade",
    ),
    "tickers": (
        *COMMON_COLUMNS,
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
        *COMMON_COLUMNS,
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
}
TABLES: tuple[str, ...] = tuple(COLUMNS)
TABLE_BY_TYPE: dict[type[RecBase], str] = {
    RecSnapshot: "orderbook_snapshots",
    RecDelta: "orderbook_deltas",
    RecTrade: "trades",
    RecTicker: "tickers",
    RecLifecycle: "market_lifecycle",
}

_CACHE_MAX = 500_000
_text_cache: dict[str, bytes] = {}
_TS = struct.Struct(">iq")
_ts_pack = _TS.pack
_LEN = struct.Struct(">i").pack
_PG_US = PG_EPOCH_MS * 1000


def _ctext(value: str) -> bytes:
    """text field for repeating values (market, gatherer, side): cached."""
    out = _text_cache.get(value)
    if out is None:
        if len(_text_cache) >= _CACHE_MAX:
            _text_cache.clear()
        out = _text_cache[value] = text(value)
    return out


def _common(rec: RecBase) -> bytes:
    key = rec.event_key.encode()
    cache = _text_cache
    market = cache.get(rec.market) or _ctext(rec.market)
    gatherer = cache.get(rec.gatherer) or _ctext(rec.gatherer)
    return b"".join(
        (
            _ts_pack(8, rec.ts_ms * 1000 - _PG_US),
            market,
            _LEN(len(key)),
            key,
            gatherer,
            _ts_pack(8, rec.recv_ns // 1000 - _PG_US),
        )
    )


def _snapshot(rec: RecSnapshot) -> bytes:
    return b"".join(
        (
            _common(rec),
            _ctext(rec.market_id),
            numeric_array([p for p, _ in rec.yes]),
            numeric_array([c for _, c in rec.yes]),
            numeric_array([p for p, _ in rec.no]),
            numeric_array([c for _, c in rec.no]),
        )
    )


def _delta(rec: RecDelta) -> bytes:
    cache = _text_cache
    nc = NUMERIC_CACHE
    return b"".join(
        (
            _common(rec),
            cache.get(rec.market_id) or _ctext(rec.market_id),
            cache.get(rec.side) or _ctext(rec.side),
            nc.get(rec.price) or numeric(rec.price),
            nc.get(rec.delta) or numeric(rec.delta),
        )
    )


def _trade(rec: RecTrade) -> bytes:
    return b"".join(
        (
            _common(rec),
            text(rec.trade_id),
            numeric(rec.yes_price),
            numeric(rec.no_price),
            numeric(rec.count),
            _ctext(rec.taker_side),
            _ctext(rec.taker_book_side),
            boolean(rec.is_block_trade),
        )
    )


def _ticker(rec: RecTicker) -> bytes:
    return b"".join(
        (
            _common(rec),
            _ctext(rec.market_id),
            opt_numeric(rec.price),
            opt_numeric(rec.yes_bid),
            opt_numeric(rec.yes_ask),
            opt_numeric(rec.yes_bid_size),
            opt_numeric(rec.yes_ask_size),
            opt_numeric(rec.last_trade_size),
            opt_numeric(rec.volume),
            opt_numeric(rec.open_interest),
            int8(rec.dollar_volume),
            int8(rec.dollar_open_interest),
        )
    )


def _lifecycle(rec: RecLifecycle) -> bytes:
    return b"".join(
        (
            _common(rec),
            _ctext(rec.event_type),
            ts_from_s(rec.open_ts),
            ts_from_s(rec.close_ts),
            ts_from_s(rec.determination_ts),
            ts_from_s(rec.settled_ts),
            text(rec.result) if rec.result is not None else NULL,
            opt_numeric(rec.settlement_value),
            boolean(rec.is_deactivated),
            jsonb(rec.details),
        )
    )


BUILDERS: dict[type[RecBase], tuple[str, Callable[..., bytes]]] = {
    RecSnapshot: ("orderbook_snapshots", _snapshot),
    RecDelta: ("orderbook_deltas", _delta),
    RecTrade: ("trades", _trade),
    RecTicker: ("tickers", _ticker),
    RecLifecycle: ("market_lifecycle", _lifecycle),
}


def build_row(rec: RecBase) -> tuple[str, bytes]:
    """(table, row bytes without the field count); ValueError for a value that cannot be encoded."""
    table, fn = BUILDERS[type(rec)]
    return table, fn(rec)


def loaded_at_field(now_ns: int | None = None) -> bytes:
    """The ``loaded_at`` field for a batch flushed now (or at ``now_ns``)."""
    return _ts_pack(8, (time.time_ns() if now_ns is None else now_ns) // 1000 - _PG_US)


def copy_buffer(table: str, rows: list[bytes], loaded_at: bytes | None = None) -> bytes:
    """A complete binary COPY stream (header, rows, trailer) for ``rows`` of ``table``; with ``loaded_at`` (a
    field from :func:`loaded_at_field`) every row gets that value first (use ``copy_sql(with_loaded_at=True)``)."""
    if loaded_at is None:
        prefix = struct.pack(">h", len(COLUMNS[table]))
    else:
        prefix = struct.pack(">h", len(COLUMNS[table]) + 1) + loaded_at
    return b"".join((COPY_HEADER, prefix, prefix.join(rows), COPY_TRAILER))


def copy_sql(table: str, target: str | None = None, with_loaded_at: bool = False) -> str:
    """``COPY <target> (columns) FROM STDIN (FORMAT BINARY)``; ``target`` defaults to the table itself."""
    cols = ("loaded_at", *COLUMNS[table]) if with_loaded_at else COLUMNS[table]
    return f"COPY {target or table} ({', '.join(cols)}) FROM STDIN (FORMAT BINARY)"
