"""The venue's market list: compact per-market state (one status byte each) with derived names and times.

Market ``i`` is named ``KXSIM-E<i // 10>-M<i>`` (event of 10 markets), its UUID and times derive from the
seed and ``i``, so a million markets cost about one byte each. Markets are created and settled while the
venue runs. Renders REST ``Market`` objects and applies the REST ``status`` filter vocabulary.
"""

from __future__ import annotations

import functools

from venue_sim.wire import PRICE, rfc3339

__all__ = [
    "FILTER_STATUSES",
    "STATUS_NAMES",
    "ST_ACTIVE",
    "ST_CLOSED",
    "ST_DETERMINED",
    "ST_FINALIZED",
    "ST_INACTIVE",
    "ST_INITIALIZED",
    "MarketTable",
]

ST_INITIALIZED, ST_INACTIVE, ST_ACTIVE, ST_CLOSED, ST_DETERMINED, ST_FINALIZED = range(6)
# Response vocabulary of the real API (disputed/amended are never produced by the emulator).
STATUS_NAMES: tuple[str, ...] = ("initialized", "inactive", "active", "closed", "determined", "finalized")
# Query filter vocabulary -> response statuses it selects.
FILTER_STATUSES: dict[str, tuple[int, ...]] = {
    "unopened": (ST_INITIALIZED,),
    "open": (ST_ACTIVE,),
    "paused": (ST_INACTIVE,),
    "closed": (ST_CLOSED, ST_DETERMINED),
    "settled": (ST_FINALIZED,),
}

PREFIX = "KXSIM-E"
DAY_MS = 86_400_000


class MarketTable:
    """All markets ever listed. ``status[i]`` is one of the ``ST_*`` codes; names and ids are computed."""

    __slots__ = ("base_ts_ms", "created_ms", "results", "seed", "status")

    def __init__(self, count: int, seed: int, base_ts_ms: int) -> None:
        self.seed = seed
        self.base_ts_ms = base_ts_ms
        self.status = bytearray([ST_ACTIVE]) * count
        self.created_ms: dict[int, int] = {}  # only for markets created while running
        self.results: dict[int, str] = {}  # determined markets: "yes" | "no"

    def __len__(self) -> int:
        return len(self.status)

    @staticmethod
    def ticker(i: int) -> str:
        return f"{PREFIX}{i // 10}-M{i}"

    @staticmethod
    def event_ticker(i: int) -> str:
        return f"{PREFIX}{i // 10}"

    def index(self, ticker: str) -> int | None:
        """Index of a ticker, or None when no such market exists."""
        if not ticker.startswith(PREFIX):
            return None
        _, sep, num = ticker.rpartition("-M")
        if not sep or not num.isdigit() or (len(num) > 1 and num[0] == "0"):
            return None
        i = int(num)
        if i >= len(self.status) or ticker != self.ticker(i):
            return None
        return i

    def market_id(self, i: int) -> str:
        return f"{self.seed & 0xFFFFFFFF:08x}-0000-4000-8000-{i:012x}"

    def add(self, now_ms: int) -> int:
        """A new market in status ``initialized``; returns its index."""
        self.status.append(ST_INITIALIZED)
        i = len(self.status) - 1
        self.created_ms[i] = now_ms
        return i

    def open_ms(self, i: int) -> int:
        return self.created_ms.get(i, self.base_ts_ms)

    def close_ms(self, i: int) -> int:
        return self.open_ms(i) + (30 + i % 60) * DAY_MS

    def find(self, codes: tuple[int, ...] | None, start: int) -> int:
        """First index >= start whose status is in ``codes`` (any when None); -1 when none."""
        if codes is None:
            return start if start < len(self.status) else -1
        best = -1
        for code in codes:
            pos = self.status.find(code, start)
            if pos != -1 and (best == -1 or pos < best):
                best = pos
        return best

    def page(self, codes: tuple[int, ...] | None, start: int, limit: int) -> tuple[list[int], int]:
        """Up to ``limit`` matching indexes from ``start`` and the next start (-1 = end)."""
        out: list[int] = []
        pos = start
        while len(out) < limit:
            pos = self.find(codes, pos)
            if pos == -1:
                return out, -1
            out.append(pos)
            pos += 1
        return out, (pos if self.find(codes, pos) != -1 else -1)

    def rest_market(self, i: int, top: tuple[int, int, int, int, int]) -> str:
        """REST ``Market`` JSON object. ``top`` = (yes_bid, yes_ask, last_price cents, volume, open_interest)."""
        yes_bid, yes_ask, last, volume, oi = top
        open_ms = self.open_ms(i)
        close_ms = self.close_ms(i)
        opened = _time(open_ms)
        closes = _time(close_ms)
        vol = f"{volume // 100}.{volume % 100:02d}"
        return (
            f'{{"ticker":"{self.ticker(i)}","event_ticker":"{self.event_ticker(i)}","market_type":"binary",'
            f'"title":"Simulated market {i}","subtitle":"","yes_sub_title":"Outcome {i} happens",'
            f'"no_sub_title":"Outcome {i} does not happen","status":"{STATUS_NAMES[self.status[i]]}",'
            f'"created_time":"{opened}","updated_time":"{opened}","open_time":"{opened}","close_time":"{closes}",'
            f'"expected_expiration_time":"{closes}","latest_expiration_time":"{_time(close_ms + 7 * DAY_MS)}",'
            f'"settlement_timer_seconds":300,"result":"{self.results.get(i, "")}","can_close_early":true,'
            f'"rules_primary":"Resolves Yes if outcome {i} happens.","rules_secondary":"",'
            f'"price_level_structure":"linear_cent",'
            f'"price_ranges":[{{"start":"0.0000","end":"1.0000","step":"0.0100"}}],'
            f'"yes_bid_dollars":"{PRICE[yes_bid]}","yes_ask_dollars":"{PRICE[yes_ask]}",'
            f'"no_bid_dollars":"{PRICE[100 - yes_ask]}","no_ask_dollars":"{PRICE[100 - yes_bid]}",'
            f'"last_price_dollars":"{PRICE[last]}","previous_yes_bid_dollars":"{PRICE[yes_bid]}",'
            f'"previous_yes_ask_dollars":"{PRICE[yes_ask]}","previous_price_dollars":"{PRICE[last]}",'
            f'"volume_fp":"{vol}","volume_24h_fp":"{vol}","open_interest_fp":"{oi // 100}.{oi % 100:02d}",'
            f'"liquidity_dollars":"0.0000","notional_value_dollars":"1.0000","response_price_units":"usd_cent"}}'
        )


@functools.lru_cache(maxsize=4096)
def _time(ms: int) -> str:
    return rfc3339(ms)
