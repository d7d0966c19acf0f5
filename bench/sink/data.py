"""Seeded synthetic ``events`` for the sink's tests and benchmark: every event type, realistic proportions.

Prices are fixed-point dollars (4 decimals), sizes fractional counts (2 decimals); event keys
are unique per event. Deterministic for a given seed.
"""

from __future__ import annotations

import random
from decimal import Decimal

from schemas import BookDelta, BookSnapshot, Event, Gap, Lifecycle, Ticker, Trade
from venues import default_name

__all__ = ["BASE_MS", "make_events"]

VENUE = default_name()
BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def _price(rng: random.Random) -> Decimal:
    return Decimal(rng.randint(1, 99)) / 100 + Decimal(rng.randint(0, 99)) / 10000


def _size(rng: random.Random) -> Decimal:
    return Decimal(rng.randint(0, 500_000)) / 100


def make_events(n: int, markets: int = 1000, seed: int = 1, start_ms: int = BASE_MS) -> list[Event]:
    """``n`` distinct events on ``markets`` markets: 70% deltas, 14% tickers, 10% trades, 5% snapshots, 1% lifecycle
    (of which a tenth are gatherer gap reports)."""
    rng = random.Random(seed)
    out: list[Event] = []
    for i in range(n):
        market = f"KXM-{rng.randrange(markets):06d}"
        ts_ms = start_ms + i  # increasing venue time (1 event/ms)
        common = {
            "venue": VENUE,
            "market": market,
            "ts_ms": ts_ms,
            "recv_ns": ts_ms * 1_000_000 + rng.randint(0, 999_999),
            "gatherer": rng.choice(("g1", "g2", "g3")),
        }
        r = rng.random()
        if r < 0.70:
            side = rng.choice(("yes", "no"))
            ev: Event = BookDelta(
                **common,
                event_key=f"d:{market}:{i}",
                market_id=f"id-{market}",
                side=side,  # type: ignore[arg-type]
                price=_price(rng),
                delta=Decimal(rng.randint(-50_000, 50_000)) / 100,
            )
        elif r < 0.84:
            ev = Ticker(
                **common,
                event_key=f"k:{market}:{i}",
                market_id=f"id-{market}",
                price=_price(rng),
                yes_bid=_price(rng),
                yes_ask=_price(rng),
                yes_bid_size=_size(rng),
                yes_ask_size=_size(rng) if rng.random() < 0.9 else None,
                last_trade_size=_size(rng),
                volume=_size(rng) * 100,
                open_interest=_size(rng),
                dollar_volume=rng.randint(0, 10**9),
                dollar_open_interest=rng.randint(0, 10**9) if rng.random() < 0.9 else None,
            )
        elif r < 0.94:
            yes = _price(rng)
            ev = Trade(
                **common,
                event_key=f"t:{seed}:{i}",
                trade_id=f"tr-{seed}-{i}",
                yes_price=yes,
                no_price=Decimal(1) - yes,
                count=_size(rng),
                taker_side=rng.choice(("yes", "no")),
                taker_book_side=rng.choice(("bid", "ask")),
                is_block_trade=rng.random() < 0.05,
            )
        elif r < 0.99:
            levels = rng.randint(0, 8)
            ev = BookSnapshot(
                **common,
                event_key=f"s:{market}:{i}",
                market_id=f"id-{market}",
                yes=sorted((_price(rng), _size(rng)) for _ in range(levels)),
                no=sorted((_price(rng), _size(rng)) for _ in range(rng.randint(0, 8))),
                after_keys=[f"d:{market}:{i}:{k}" for k in range(rng.randint(0, 2))],
            )
        elif r >= 0.999:
            ev = Gap(
                **common,
                event_key=f"g:{seed}:{i}",
                conn=rng.randint(0, 5),
                kind=rng.choice(("seq", "down")),
                channel=rng.choice(("", "orderbook_delta")),
                markets=[market, "KXM-000001"] if rng.random() < 0.5 else ["*"],
                from_ns=ts_ms * 1_000_000,
                to_ns=ts_ms * 1_000_000 + rng.randint(0, 10**9),
                sid=rng.randint(1, 50) if rng.random() < 0.5 else None,
                missed=rng.randint(1, 9) if rng.random() < 0.5 else None,
            )
        else:
            settled = rng.random() < 0.5
            ev = Lifecycle(
                **common,
                event_key=f"l:{market}:{i}",
                event_type="settled" if settled else "activated",
                open_ts=ts_ms // 1000 - 86400,
                close_ts=ts_ms // 1000 + 3600,
                settled_ts=ts_ms // 1000 if settled else None,
                result=rng.choice(("yes", "no")) if settled else None,
                settlement_value=Decimal("1.0000") if settled else None,
                is_deactivated=False if settled else None,
                details='{"price_level_structure":"linear_cent","n":' + str(i) + "}" if rng.random() < 0.5 else "",
            )
        out.append(ev)
    return out
