"""Read the sink's tables back for `mdpipe verify`: one Observed per row, plus when each market was first held."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg

from mdpipe.verify import Observed, identity

__all__ = ["first_held_ns", "iter_observed", "snapshot_count"]

_MS = "(extract(epoch from ts) * 1000)::bigint AS ts_ms"
_LOADED = (
    "(extract(epoch from loaded_at) * 1000000000)::bigint AS loaded_ns, "
    "(extract(epoch from received_at) * 1000000000)::bigint AS received_ns"
)
_SECONDS = "(extract(epoch from {0}))::bigint AS {0}"

QUERIES: dict[str, str] = {
    "delta": f"SELECT market, side, price, delta, {_MS}, {_LOADED} FROM orderbook_deltas",
    "trade": f"SELECT market, trade_id, {_MS}, {_LOADED} FROM trades",
    "ticker": f"""SELECT market, {_MS}, price, yes_bid, yes_ask, yes_bid_size, yes_ask_size, last_trade_size,
                 volume, open_interest, dollar_volume, dollar_open_interest, {_LOADED} FROM tickers""",
    "lifecycle": f"""SELECT market, event_type, result, settlement_value,
                    {", ".join(_SECONDS.format(c) for c in ("open_ts", "close_ts", "determination_ts", "settled_ts"))},
                    {_LOADED} FROM market_lifecycle""",
}


def iter_observed(conn: psycopg.Connection[Any]) -> Iterator[Observed]:
    for kind, sql in QUERIES.items():
        with conn.cursor(name=f"verify_{kind}") as cur:
            cur.itersize = 50_000
            cur.execute(sql)
            names = [d.name for d in cur.description or ()]
            for values in cur:
                row = dict(zip(names, values, strict=True))
                yield Observed(
                    kind, row["market"], identity(kind, row["market"], row), row["loaded_ns"], row["received_ns"]
                )


def first_held_ns(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Per market, when a gatherer first received its order-book snapshot (the start of its coverage)."""
    rows = conn.execute(
        "SELECT market, (extract(epoch from min(received_at)) * 1000000000)::bigint FROM orderbook_snapshots "
        "GROUP BY market"
    ).fetchall()
    return {market: int(ns) for market, ns in rows}


def snapshot_count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM orderbook_snapshots").fetchone()
    return int(row[0]) if row else 0
