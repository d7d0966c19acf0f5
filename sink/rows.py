"""Binary COPY rows for the event tables and the coverage gaps, built from :mod:`sink.records` (pure, no I/O).

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
    numeric_array_of,
    numeric_miss,
    opt_numeric,
    text,
    text_array,
    ts_from_ns,
    ts_from_s,
)
from sink.records import RecBase, RecDelta, RecGap, RecLifecycle, RecSnapshot, RecTicker, RecTrade

__all__ = [
    "BUILDERS",
    "COLUMNS",
    "COMMON_COLUMNS",
    "COPY_COLUMNS",
    "DELTA_ALIASES",
    "TABLES",
    "TABLE_BY_TYPE",
    "build_row",
    "copy_buffer",
    "copy_sql",
    "loaded_at_field",
]

# COPY column order (not the tables' order): the two timestamps and the event key's length come first so that one
# struct.pack encodes them together; the other columns follow in any order (COPY names them).
COMMON_COLUMNS = ("ts", "received_at", "event_key", "venue", "market", "gatherer")

COLUMNS: dict[str, tuple[str, ...]] = {
    "orderbook_snapshots": (
        *COMMON_COLUMNS,
        "market_id",
        "yes_prices",
        "yes_counts",
        "no_prices",
        "no_counts",
        "after_keys",
    ),
    "orderbook_deltas": (*COMMON_COLUMNS, "market_id", "side", "price", "delta", "replaces", "ordinal"),
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
        "keys",
    ),
    "coverage_gaps": (
        *COMMON_COLUMNS,
        "conn",
        "kind",
        "channel",
        "markets",
        "from_at",
        "to_at",
        "sid",
        "missed",
    ),
}
TABLES: tuple[str, ...] = tuple(COLUMNS)
# What a COPY stream of a table's rows holds: its columns, and for market_lifecycle also ``alias`` (an alias record,
# :class:`schemas.events.Lifecycle`). Lifecycle rows are never copied into their table directly: the sink copies them
# into a staging table with that column and applies them one by one, by any of their keys (:mod:`sink.lifecycle`).
COPY_COLUMNS: dict[str, tuple[str, ...]] = {**COLUMNS, "market_lifecycle": (*COLUMNS["market_lifecycle"], "alias")}
# Alias delta records (:class:`schemas.events.BookDelta` ``alias``) are no rows of their own: a batch keeps them apart
# under this name, as COPY rows of orderbook_deltas' layout, and the sink raises the ordinal of the rows they name
# (:mod:`sink.ordinals`).
DELTA_ALIASES = "orderbook_deltas:alias"
COPY_COLUMNS[DELTA_ALIASES] = COLUMNS["orderbook_deltas"]
TABLE_BY_TYPE: dict[type[RecBase], str] = {
    RecSnapshot: "orderbook_snapshots",
    RecDelta: "orderbook_deltas",
    RecTrade: "trades",
    RecTicker: "tickers",
    RecLifecycle: "market_lifecycle",
    RecGap: "coverage_gaps",
}

_CACHE_MAX = 500_000
_text_cache: dict[str, bytes] = {}
_TS = struct.Struct(">iq")
_ts_pack = _TS.pack
_head = struct.Struct(">iqiqi").pack  # ts, received_at, length of event_key
_i8 = _TS.pack  # bigint: the same layout as a timestamp
_TRUE, _FALSE = boolean(True), boolean(False)
_i4 = struct.Struct(">ii").pack  # integer: length 4, value
_ADDS = _FALSE + _i4(4, 0)  # replaces, ordinal of an additive delta (the common case)
_PG_US = PG_EPOCH_MS * 1000
_NC = NUMERIC_CACHE
_TC = _text_cache


def _ctext(value: str) -> bytes:
    """text field for repeating values (venue, market, gatherer, side): cached. Callers try ``_TC.get`` inline first."""
    out = text(value)
    if len(_text_cache) >= _CACHE_MAX:
        _text_cache.clear()
    _text_cache[value] = out
    return out


# One function per table, every field inline (a call per field costs as much as encoding it): the common
# columns, then the table's own. ``_TC.get(x) or _ctext(x)`` and ``_NC.get(x) or numeric_miss(x)`` are the
# cached text and numeric fields.


def _snapshot(r: RecSnapshot) -> bytes:
    key = r.event_key.encode()
    return b"".join(
        (
            _head(8, r.ts_ms * 1000 - _PG_US, 8, r.recv_ns // 1000 - _PG_US, len(key)),
            key,
            _TC.get(r.venue) or _ctext(r.venue),
            _TC.get(r.market) or _ctext(r.market),
            _TC.get(r.gatherer) or _ctext(r.gatherer),
            _TC.get(r.market_id) or _ctext(r.market_id),
            numeric_array_of([_NC.get(p) or numeric_miss(p) for p, _ in r.yes]),
            numeric_array_of([_NC.get(c) or numeric_miss(c) for _, c in r.yes]),
            numeric_array_of([_NC.get(p) or numeric_miss(p) for p, _ in r.no]),
            numeric_array_of([_NC.get(c) or numeric_miss(c) for _, c in r.no]),
            text_array(r.after_keys),
        )
    )


def _delta(r: RecDelta) -> bytes:
    key = r.event_key.encode()
    return b"".join(
        (
            _head(8, r.ts_ms * 1000 - _PG_US, 8, r.recv_ns // 1000 - _PG_US, len(key)),
            key,
            _TC.get(r.venue) or _ctext(r.venue),
            _TC.get(r.market) or _ctext(r.market),
            _TC.get(r.gatherer) or _ctext(r.gatherer),
            _TC.get(r.market_id) or _ctext(r.market_id),
            _TC.get(r.side) or _ctext(r.side),
            _NC.get(r.price) or numeric_miss(r.price),
            _NC.get(r.delta) or numeric_miss(r.delta),
            _ADDS if not r.replaces and not r.ordinal else (_TRUE if r.replaces else _FALSE) + _i4(4, r.ordinal),
        )
    )


def _trade(r: RecTrade) -> bytes:
    key = r.event_key.encode()
    return b"".join(
        (
            _head(8, r.ts_ms * 1000 - _PG_US, 8, r.recv_ns // 1000 - _PG_US, len(key)),
            key,
            _TC.get(r.venue) or _ctext(r.venue),
            _TC.get(r.market) or _ctext(r.market),
            _TC.get(r.gatherer) or _ctext(r.gatherer),
            text(r.trade_id),
            _NC.get(r.yes_price) or numeric_miss(r.yes_price),
            _NC.get(r.no_price) or numeric_miss(r.no_price),
            _NC.get(r.count) or numeric_miss(r.count),
            _TC.get(r.taker_side) or _ctext(r.taker_side),
            _TC.get(r.taker_book_side) or _ctext(r.taker_book_side),
            _TRUE if r.is_block_trade else _FALSE,
        )
    )


def _ticker(r: RecTicker) -> bytes:
    key = r.event_key.encode()
    return b"".join(
        (
            _head(8, r.ts_ms * 1000 - _PG_US, 8, r.recv_ns // 1000 - _PG_US, len(key)),
            key,
            _TC.get(r.venue) or _ctext(r.venue),
            _TC.get(r.market) or _ctext(r.market),
            _TC.get(r.gatherer) or _ctext(r.gatherer),
            _TC.get(r.market_id) or _ctext(r.market_id),
            NULL if (v := r.price) is None else _NC.get(v) or numeric_miss(v),
            NULL if (v := r.yes_bid) is None else _NC.get(v) or numeric_miss(v),
            NULL if (v := r.yes_ask) is None else _NC.get(v) or numeric_miss(v),
            NULL if (v := r.yes_bid_size) is None else _NC.get(v) or numeric_miss(v),
            NULL if (v := r.yes_ask_size) is None else _NC.get(v) or numeric_miss(v),
            NULL if (v := r.last_trade_size) is None else _NC.get(v) or numeric_miss(v),
            NULL if (v := r.volume) is None else _NC.get(v) or numeric_miss(v),
            NULL if (v := r.open_interest) is None else _NC.get(v) or numeric_miss(v),
            NULL if (n := r.dollar_volume) is None else _i8(8, n),
            NULL if (n := r.dollar_open_interest) is None else _i8(8, n),
        )
    )


def _lifecycle(r: RecLifecycle) -> bytes:
    key = r.event_key.encode()
    return b"".join(
        (
            _head(8, r.ts_ms * 1000 - _PG_US, 8, r.recv_ns // 1000 - _PG_US, len(key)),
            key,
            _TC.get(r.venue) or _ctext(r.venue),
            _TC.get(r.market) or _ctext(r.market),
            _TC.get(r.gatherer) or _ctext(r.gatherer),
            _TC.get(r.event_type) or _ctext(r.event_type),
            ts_from_s(r.open_ts),
            ts_from_s(r.close_ts),
            ts_from_s(r.determination_ts),
            ts_from_s(r.settled_ts),
            text(r.result) if r.result is not None else NULL,
            opt_numeric(r.settlement_value),
            boolean(r.is_deactivated),
            jsonb(r.details),
            text_array(r.keys or [r.event_key]),
            _TRUE if r.alias else _FALSE,
        )
    )


def _gap(r: RecGap) -> bytes:
    key = r.event_key.encode()
    return b"".join(
        (
            _head(8, r.ts_ms * 1000 - _PG_US, 8, r.recv_ns // 1000 - _PG_US, len(key)),
            key,
            _TC.get(r.venue) or _ctext(r.venue),
            _TC.get(r.market) or _ctext(r.market),
            _TC.get(r.gatherer) or _ctext(r.gatherer),
            int8(r.conn),
            text(r.kind),
            text(r.channel),
            text_array(r.markets),
            ts_from_ns(r.from_ns),
            ts_from_ns(r.to_ns),
            int8(r.sid),
            int8(r.missed),
        )
    )


BUILDERS: dict[type[RecBase], tuple[str, Callable[..., bytes]]] = {
    RecSnapshot: ("orderbook_snapshots", _snapshot),
    RecDelta: ("orderbook_deltas", _delta),
    RecTrade: ("trades", _trade),
    RecTicker: ("tickers", _ticker),
    RecLifecycle: ("market_lifecycle", _lifecycle),
    RecGap: ("coverage_gaps", _gap),
}


def build_row(rec: RecBase) -> tuple[str, bytes]:
    """(table, row bytes without the field count); ValueError for a value that cannot be encoded. The table of an
    alias delta record is :data:`DELTA_ALIASES`."""
    table, fn = BUILDERS[type(rec)]
    return DELTA_ALIASES if type(rec) is RecDelta and rec.alias else table, fn(rec)


def loaded_at_field(now_ns: int | None = None) -> bytes:
    """The ``loaded_at`` field for a batch flushed now (or at ``now_ns``)."""
    return _ts_pack(8, (time.time_ns() if now_ns is None else now_ns) // 1000 - _PG_US)


def copy_buffer(table: str, rows: list[bytes], loaded_at: bytes | None = None) -> bytes:
    """A complete binary COPY stream (header, rows, trailer) for ``rows`` of ``table``; with ``loaded_at`` (a
    field from :func:`loaded_at_field`) every row gets that value first (use ``copy_sql(with_loaded_at=True)``)."""
    if not rows:  # no row at all: no field count either (PostgreSQL rejects a count without its row)
        return COPY_HEADER + COPY_TRAILER
    if loaded_at is None:
        prefix = struct.pack(">h", len(COPY_COLUMNS[table]))
    else:
        prefix = struct.pack(">h", len(COPY_COLUMNS[table]) + 1) + loaded_at
    return b"".join((COPY_HEADER, prefix, prefix.join(rows), COPY_TRAILER))


def copy_sql(table: str, target: str | None = None, with_loaded_at: bool = False) -> str:
    """``COPY <target> (columns) FROM STDIN (FORMAT BINARY)``; ``target`` defaults to the table itself."""
    cols = ("loaded_at", *COPY_COLUMNS[table]) if with_loaded_at else COPY_COLUMNS[table]
    return f"COPY {target or table} ({', '.join(cols)}) FROM STDIN (FORMAT BINARY)"
