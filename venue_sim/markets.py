"""The venue's market list: compact per-market state (one status byte each) with derived names and times.

Market ``i`` is named ``KXSIM-E<i // 10>-M<i>`` (event of 10 markets), its UUID and times derive from the
seed and ``i``, so a million markets cost about one byte each. Markets are created and settled while the
venue runs. Pages of markets whose status is in a set of codes (:meth:`MarketTable.page`) are what a venue's REST
listing shows; rendering them and the venue's status vocabulary are the venue's emulator profile's.

REST trails the WebSocket (real listings lag lifecycle messages by tens of seconds): with ``rest_lag_ms`` set,
every status change is logged with its venue time, and :meth:`MarketTable.rest_view` gives, for the few markets
that changed within the lag, the status they had ``rest_lag_ms`` ago (:data:`ABSENT` for a market created since).
Only changes younger than the lag are kept, so the cost is proportional to the lifecycle traffic, not to the
number of markets.
"""

from __future__ import annotations

import bisect
from collections import deque

__all__ = [
    "ABSENT",
    "ST_ACTIVE",
    "ST_CLOSED",
    "ST_DETERMINED",
    "ST_FINALIZED",
    "ST_INACTIVE",
    "ST_INITIALIZED",
    "MarketTable",
]

ST_INITIALIZED, ST_INACTIVE, ST_ACTIVE, ST_CLOSED, ST_DETERMINED, ST_FINALIZED = range(6)
ABSENT = 255  # REST view of a market created less than rest_lag_ms ago: not listed yet

PREFIX = "KXSIM-E"
DAY_MS = 86_400_000


class MarketTable:
    """All markets ever listed. ``status[i]`` is one of the ``ST_*`` codes; names and ids are computed."""

    __slots__ = ("_changes", "base_ts_ms", "created_ms", "initial", "rest_lag_ms", "results", "seed", "status")

    def __init__(self, count: int, seed: int, base_ts_ms: int, rest_lag_ms: int = 0) -> None:
        self.seed = seed
        self.base_ts_ms = base_ts_ms
        self.initial = count  # markets listed at start (indexes 0 .. initial - 1)
        self.status = bytearray([ST_ACTIVE]) * count
        self.created_ms: dict[int, int] = {}  # only for markets created while running
        self.results: dict[int, str] = {}  # determined markets: "yes" | "no"
        self.rest_lag_ms = rest_lag_ms
        self._changes: deque[tuple[int, int, int]] = deque()  # (venue ms, market, status before), oldest first

    def set_status(self, i: int, status: int, ts_ms: int) -> None:
        """Change market ``i``'s status at venue time ``ts_ms`` (logged for the lagging REST view)."""
        old = self.status[i]
        if old == status:
            return
        self.status[i] = status
        if self.rest_lag_ms:
            self._changes.append((ts_ms, i, old))

    def rest_view(self, now_ms: int) -> dict[int, int]:
        """Markets whose REST status differs from the live one at venue time ``now_ms``: market -> the status it
        had ``rest_lag_ms`` earlier (:data:`ABSENT` = not created yet). Forgets changes older than the lag."""
        if not self.rest_lag_ms:
            return {}
        cutoff = now_ms - self.rest_lag_ms
        changes = self._changes
        while changes and changes[0][0] <= cutoff:
            changes.popleft()
        view: dict[int, int] = {}
        for _, i, old in changes:
            view.setdefault(i, old)  # the status before the first change REST has not seen yet
        return {i: st for i, st in view.items() if st != self.status[i]}

    def rest_status(self, i: int, view: dict[int, int]) -> int:
        return view.get(i, self.status[i])

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
        if self.rest_lag_ms:
            self._changes.append((now_ms, i, ABSENT))
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

    def page(
        self, codes: tuple[int, ...] | None, start: int, limit: int, view: dict[int, int] | None = None
    ) -> tuple[list[int], int]:
        """Up to ``limit`` matching indexes from ``start`` and the next start (-1 = end).

        ``view`` (from :meth:`rest_view`) overrides the status of the markets it names: a market is listed
        by the status REST reports for it, so a filter selects what a lagging listing would select."""
        if not view:
            out: list[int] = []
            pos = start
            while len(out) < limit:
                pos = self.find(codes, pos)
                if pos == -1:
                    return out, -1
                out.append(pos)
                pos += 1
            return out, (pos if self.find(codes, pos) != -1 else -1)
        # Markets selected only by their lagged status (the live one does not match), in index order.
        extra = sorted(i for i, st in view.items() if st != ABSENT and (codes is None or st in codes))

        def listed(i: int) -> bool:
            st = view.get(i)
            return st is None or (st != ABSENT and (codes is None or st in codes))

        def nxt(pos: int) -> int:
            live = self.find(codes, pos)
            while live != -1 and not listed(live):
                live = self.find(codes, live + 1)
            k = bisect.bisect_left(extra, pos)
            lagged = extra[k] if k < len(extra) else -1
            if live == -1 or (lagged != -1 and lagged < live):
                return lagged
            return live

        out = []
        pos = start
        while len(out) < limit:
            pos = nxt(pos)
            if pos == -1:
                return out, -1
            out.append(pos)
            pos += 1
        return out, (pos if nxt(pos) != -1 else -1)
