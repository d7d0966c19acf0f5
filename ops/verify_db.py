"""Read the sink's tables back for `mdpipe verify`: every event row (as an Observed), the snapshot and delta rows,
the books the database rebuilds at the venue's checkpoints, and the gatherers' coverage gaps. With a ``venue``, only
that venue's rows (a database may hold several venues: migration 0008)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import psycopg

from mdpipe.logging import get_logger
from ops.verify import DatabaseRows, GapWindow, Observed, identity
from sink.book import DeltaRow, SnapshotRow
from sink.book_db import books_at as db_books_at
from venue_sim.record import BookCheckpoint

__all__ = ["QUERIES", "read_database"]

log = get_logger(__name__)

_MS = "(extract(epoch from ts) * 1000)::bigint AS ts_ms"
_LOADED = (
    "(extract(epoch from loaded_at) * 1000000000)::bigint AS loaded_ns, "
    "(extract(epoch from received_at) * 1000000000)::bigint AS received_ns"
)
_SECONDS = "(extract(epoch from {0}))::bigint AS {0}"

QUERIES: dict[str, str] = {
    "delta": f"SELECT market, event_key, side, price, delta, replaces, ordinal, {_MS}, {_LOADED} FROM orderbook_deltas",
    "trade": f"SELECT market, trade_id, {_MS}, yes_price, count, taker_side, {_LOADED} FROM trades",
    "ticker": f"""SELECT market, {_MS}, price, yes_bid, yes_ask, yes_bid_size, yes_ask_size, last_trade_size,
                 volume, open_interest, dollar_volume, dollar_open_interest, {_LOADED} FROM tickers""",
    "lifecycle": f"""SELECT market, event_type, result, settlement_value,
                    {", ".join(_SECONDS.format(c) for c in ("open_ts", "close_ts", "determination_ts", "settled_ts"))},
                    is_deactivated, details::text AS details, {_LOADED} FROM market_lifecycle""",
}
SNAPSHOTS = (
    f"SELECT market, {_MS}, event_key, yes_prices, yes_counts, no_prices, no_counts, after_keys "
    "FROM orderbook_snapshots"
)
GAPS = (
    "SELECT gatherer, channel, markets, (extract(epoch from from_at) * 1000000000)::bigint, "
    "(extract(epoch from to_at) * 1000000000)::bigint FROM coverage_gaps"
)


def _of_venue(query: str, venue: str | None) -> tuple[str, dict[str, str] | None]:
    """``query`` (one table, no WHERE) and its parameters, restricted to the rows of ``venue`` when given."""
    return (query, None) if venue is None else (f"{query} WHERE venue = %(venue)s", {"venue": venue})


def _rows(conn: psycopg.Connection[Any], name: str, query: str, venue: str | None) -> Iterator[dict[str, Any]]:
    with conn.cursor(name=f"verify_{name}") as cur:
        cur.itersize = 50_000
        cur.execute(*_of_venue(query, venue))  # type: ignore[arg-type]
        names = [d.name for d in cur.description or ()]
        for values in cur:
            yield dict(zip(names, values, strict=True))


def read_database(
    conn: psycopg.Connection[Any],
    checkpoints: Iterable[BookCheckpoint] = (),
    venue: str | None = None,
    *,
    trade_ids: bool = True,
    db_books: bool = True,
) -> DatabaseRows:
    """Everything the comparison reads from the database (held in memory: one demo is ~1M rows), and the books the
    database's ``book_at`` rebuilds at the venue's ``checkpoints`` (:mod:`sink.book_db`; not with ``db_books``
    False: the venue rebuilds its books its own way); only ``venue``'s rows when given. ``trade_ids``: as
    :func:`ops.verify.identity` takes it."""
    out = DatabaseRows()
    if not db_books:
        pass
    elif conn.execute("SELECT to_regprocedure('book_at(text, timestamptz, text)')").fetchone()[0] is not None:  # type: ignore[index]
        wanted = sorted({(cp.market, cp.ts_ms) for cp in checkpoints})
        out.books = dict(zip(wanted, db_books_at(conn, wanted, venue=venue), strict=True))
    else:
        log.warning("book_at_missing", detail="database not migrated to 0008: books rebuilt in Python")
    observed: list[Observed] = []
    for kind, sql in QUERIES.items():
        for row in _rows(conn, kind, sql, venue):
            market = row["market"]
            ident = identity(kind, market, row, trade_ids)
            observed.append(Observed(kind, market, ident, row["loaded_ns"], row["received_ns"]))
            if kind == "delta":
                out.deltas.setdefault(market, []).append(
                    DeltaRow(
                        row["ts_ms"],
                        row["event_key"],
                        row["side"],
                        row["price"],
                        row["delta"],
                        row["replaces"],
                        row["ordinal"],
                    )
                )
    out.observed = observed
    for row in _rows(conn, "snapshots", SNAPSHOTS, venue):
        out.snapshots.setdefault(row["market"], []).append(
            SnapshotRow(
                row["ts_ms"],
                row["event_key"],
                list(zip(row["yes_prices"], row["yes_counts"], strict=True)),
                list(zip(row["no_prices"], row["no_counts"], strict=True)),
                frozenset(row["after_keys"] or ()),
            )
        )
    for gatherer, channel, markets, from_ns, to_ns in conn.execute(*_of_venue(GAPS, venue)):  # type: ignore[arg-type]
        every = "*" in (markets or ())  # an empty list covers no market
        out.gaps.append(GapWindow(gatherer, channel or "", None if every else frozenset(markets or ()), from_ns, to_ns))
    return out
