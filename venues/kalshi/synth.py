"""Kalshi's synthetic data for the stages' tests and benchmarks (never used in production; the shape:
:mod:`venues.synthetic`), reached through ``get_venue(...).synth()``.

:func:`venue_events` draws distinct market-data events (deltas, including identical bodies told apart by their
occurrence number, and trades); :func:`pipeline_events` draws the mix a pipeline run on the emulator carries (deltas,
tickers, trades, snapshots with several levels a side, lifecycle messages, shaped like the emulator's messages: see
:data:`PIPELINE_MIX`); :func:`payload` wraps one body in the envelope of a data message on sid 1. A test that
writes its scenario message by message takes the bodies of :func:`delta_body`, :func:`trade_body`,
:func:`ticker_body` and :func:`lifecycle_body`.
"""

from __future__ import annotations

import json
import random
import time
from decimal import Decimal
from typing import Any

from venues.synthetic import VenueEvent

__all__ = [
    "NAME",
    "PIPELINE_MIX",
    "delta_body",
    "lifecycle_body",
    "payload",
    "pipeline_events",
    "ticker_body",
    "trade_body",
    "venue_events",
]

NAME = "kalshi"


def venue_events(
    n: int, markets: int = 50, seed: int = 1, identical_every: int = 10, t0_ns: int | None = None
) -> list[VenueEvent]:
    """``n`` distinct venue events over ``markets`` markets, 10 kHz from ``t0_ns`` (default: now), every
    ``identical_every``-th one a delta whose body repeats the previous delta of its market exactly (so only
    the occurrence number tells them apart)."""
    rng = random.Random(seed)
    t0 = time.time_ns() if t0_ns is None else t0_ns
    tickers = [f"KXSYN-{i:05d}" for i in range(markets)]
    out: list[VenueEvent] = []
    last_delta: dict[str, tuple[str, bytes]] = {}
    occurrences: dict[str, int] = {}
    for i in range(n):
        market = tickers[rng.randrange(markets)]
        t_ns = t0 + i * 100_000
        if i % 7 == 3:
            trade_id = f"tr-{seed}-{i}"
            msg = {
                "trade_id": trade_id,
                "market_ticker": market,
                "yes_price_dollars": f"0.{rng.randrange(10, 99)}00",
                "no_price_dollars": "0.5000",
                "count_fp": f"{rng.randrange(1, 50)}.00",
                "taker_outcome_side": "yes",
                "ts_ms": t_ns // 1_000_000,
            }
            out.append(VenueEvent(NAME, market, "trade", f"trade:{trade_id}", json.dumps(msg).encode(), "trade", t_ns))
            continue
        if i % identical_every == 0 and market in last_delta:
            body_key, body = last_delta[market]
        else:
            msg = {
                "market_ticker": market,
                "market_id": f"id-{market}",
                "price_dollars": f"0.{rng.randrange(10, 99)}00",
                "delta_fp": f"{rng.choice([-1, 1]) * rng.randrange(1, 20)}.00",
                "side": rng.choice(["yes", "no"]),
                "ts_ms": t_ns // 1_000_000,
            }
            body = json.dumps(msg).encode()
            body_key = f"delta:{market}:{msg['side']}:{msg['price_dollars']}:{msg['delta_fp']}:{msg['ts_ms']}"
            last_delta[market] = (body_key, body)
        occurrences[body_key] = occurrences.get(body_key, 0) + 1
        key = f"{body_key}#{occurrences[body_key]}"
        out.append(VenueEvent(NAME, market, "delta", key, body, "orderbook_delta", t_ns))
    return out


# Share of each kind of venue event in a pipeline run on the emulator once the subscription burst is over (measured
# on the raw topics of a `make demo`-like run: deltas ~78 %, tickers ~15 %, trades ~5 %; snapshots come with
# (re)subscriptions, lifecycle messages with market churn).
PIPELINE_MIX: tuple[tuple[str, float], ...] = (
    ("delta", 0.78),
    ("ticker", 0.15),
    ("trade", 0.05),
    ("snapshot", 0.015),
    ("lifecycle", 0.005),
)


def _levels(rng: random.Random, low: int) -> list[list[str]]:
    return [
        [f"0.{p:02d}00", f"{rng.randrange(1, 100)}.{rng.randrange(100):02d}"]
        for p in range(low, low + rng.randrange(3, 11))
    ]


def pipeline_events(
    n: int, markets: int = 20_000, seed: int = 1, t0_ns: int | None = None, spacing_ns: int = 100_000
) -> list[VenueEvent]:
    """``n`` distinct venue events in the pipeline's mix (:data:`PIPELINE_MIX`) over ``markets`` markets, one every
    ``spacing_ns`` from ``t0_ns``; bodies shaped like the emulator's (a ticker carries a dozen fields, a snapshot 3 to
    10 levels a side, a lifecycle message is a metadata update or an event's creation)."""
    rng = random.Random(seed)
    t0 = time.time_ns() if t0_ns is None else t0_ns
    tickers = [f"KXSIM-E{i // 10}-M{i}" for i in range(markets)]
    kinds = [k for k, _ in PIPELINE_MIX]
    weights = [w for _, w in PIPELINE_MIX]
    drawn = rng.choices(kinds, weights, k=n)
    out: list[VenueEvent] = []
    for i, kind in enumerate(drawn):
        market = tickers[rng.randrange(markets)]
        t_ns = t0 + i * spacing_ns
        ts_ms = t_ns // 1_000_000
        market_id = f"00000007-0000-4000-8000-{i % markets:012x}"
        body: dict[str, object]
        venue_ms = None
        if kind == "delta":
            body = {"market_ticker": market, "market_id": market_id, "price_dollars": f"0.{rng.randrange(1, 99):02d}00",
                    "delta_fp": f"{rng.choice('-+').strip('+')}{rng.randrange(1, 50)}.{rng.randrange(100):02d}",
                    "side": rng.choice(["yes", "no"]), "ts_ms": ts_ms}  # fmt: skip
            msg_type, key = "orderbook_delta", f"d:{rng.getrandbits(64):016x}:1"
        elif kind == "ticker":
            price = rng.randrange(2, 98)
            body = {"market_id": market_id, "market_ticker": market, "price_dollars": f"0.{price:02d}00",
                    "yes_bid_dollars": f"0.{price - 1:02d}00", "yes_ask_dollars": f"0.{price + 1:02d}00",
                    "yes_bid_size_fp": f"{rng.randrange(1, 99)}.00", "yes_ask_size_fp": f"{rng.randrange(1, 99)}.00",
                    "last_trade_size_fp": "0.00", "volume_fp": f"{rng.randrange(500)}.00", "open_interest_fp": "0.00",
                    "dollar_volume": 0, "dollar_open_interest": 0, "ts": ts_ms // 1000, "ts_ms": ts_ms,
                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts_ms // 1000))}  # fmt: skip
            msg_type, key = "ticker", f"k:{rng.getrandbits(64):016x}:1"
        elif kind == "trade":
            price = rng.randrange(1, 99)
            trade_id = f"{seed:08x}-{i:04x}-4000-8000-{rng.randrange(1 << 48):012x}"
            body = {"trade_id": trade_id, "market_ticker": market, "yes_price_dollars": f"0.{price:02d}00",
                    "no_price_dollars": f"0.{100 - price:02d}00", "count_fp": f"{rng.randrange(1, 50)}.00",
                    "taker_side": "no", "taker_outcome_side": "no", "taker_book_side": "bid", "is_block_trade": False,
                    "ts": ts_ms // 1000, "ts_ms": ts_ms}  # fmt: skip
            msg_type, key = "trade", f"t:{trade_id}"
        elif kind == "snapshot":
            low = rng.randrange(1, 60)
            body = {"market_ticker": market, "market_id": market_id, "yes_dollars_fp": _levels(rng, low),
                    "no_dollars_fp": _levels(rng, 100 - low - 12)}  # fmt: skip
            msg_type, key, venue_ms = "orderbook_snapshot", f"s:{rng.getrandbits(64):016x}", ts_ms
        else:
            event = market.rsplit("-", 1)[0]
            body = {"event_ticker": event, "exchange_index": 0, "title": f"Simulated event {event}", "subtitle": "",
                    "collateral_return_type": "", "series_ticker": "KXSIM"}  # fmt: skip
            msg_type, key, market = "event_lifecycle", f"l:{rng.getrandbits(64):016x}", event
        out.append(VenueEvent(NAME, market, kind, key, json.dumps(body, separators=(",", ":")).encode(), msg_type, t_ns,
                              venue_ms))  # fmt: skip
    return out


def payload(msg_type: str, seq: int, msg: bytes) -> bytes:
    """One data message of type ``msg_type`` carrying ``msg`` at ``seq`` on sid 1, as the venue sends it."""
    return b'{"type":"%s","sid":1,"seq":%d,"msg":%s}' % (msg_type.encode(), seq, msg)


def delta_body(market: str, price: str, size: str, side: str = "yes", *, ts_ms: int) -> dict[str, Any]:
    """An ``orderbook_delta`` body: ``size`` contracts (signed) at ``price`` dollars on ``side`` at venue ``ts_ms``."""
    return {"market_ticker": market, "market_id": "", "price_dollars": price, "delta_fp": size, "side": side,
            "ts_ms": ts_ms}  # fmt: skip


def trade_body(
    market: str, trade_id: str, yes_price: str = "0.4400", count: str = "3.00", *, ts_ms: int
) -> dict[str, Any]:
    """A ``trade`` body: ``count`` contracts at ``yes_price`` (the no side at its complement), the yes side taking."""
    no_price = Decimal(1) - Decimal(yes_price)
    return {"trade_id": trade_id, "market_ticker": market, "yes_price_dollars": yes_price,
            "no_price_dollars": f"{no_price}", "count_fp": count, "taker_outcome_side": "yes",
            "ts_ms": ts_ms}  # fmt: skip


def ticker_body(market: str, volume: str, *, ts_ms: int) -> dict[str, Any]:
    """A ``ticker`` body of fixed quotes (0.43 bid for 10, 0.45 ask for 3, last 0.43) and ``volume`` contracts."""
    return {"market_ticker": market, "market_id": "", "price_dollars": "0.4300", "yes_bid_dollars": "0.4300",
            "yes_ask_dollars": "0.4500", "yes_bid_size_fp": "10.00", "yes_ask_size_fp": "3.00",
            "last_trade_size_fp": "3.00", "volume_fp": volume, "open_interest_fp": "50.00", "dollar_volume": 43,
            "dollar_open_interest": 21, "ts_ms": ts_ms}  # fmt: skip


def lifecycle_body(market: str, **fields: Any) -> dict[str, Any]:
    """A ``market_lifecycle_v2`` body of ``market`` with ``fields`` (what is not a known field is its details)."""
    return {"market_ticker": market, **fields}
