"""Load model: turns a seeded random stream into venue events (deltas, trades, tickers, lifecycle).

No clock and no I/O: event times come from a virtual clock (``base_ts_ms`` + events / rate), so one seed,
market count and rate schedule always yield the same events in the same order. Activity is skewed
(log-uniform over market rank: a few hot markets, a long quiet tail). Each event's JSON body is encoded
once here; connections only wrap it in their own envelope.

An event is a plain tuple ``(id, ch, market_index, ts_ms, body, body_yes)``: ``ch`` is a ``wire.CH_*``
channel number and ``body_yes`` is the body for ``use_yes_price`` subscribers when it differs (NO-side
deltas), else None.
"""

from __future__ import annotations

import random
import uuid

from venue_sim.book import LEVEL_SPAN, SLOTS, Books
from venue_sim.markets import ST_ACTIVE, ST_DETERMINED, ST_FINALIZED, MarketTable
from venue_sim.wire import CH_LIFECYCLE, CH_ORDERBOOK, CH_TICKER, CH_TRADE, PRICE, count_fp, rfc3339

__all__ = ["KINDS", "Event", "Generator"]

Event = tuple[int, int, int, int, str, str | None]
KINDS: tuple[str, ...] = ("delta", "ticker", "trade", "lifecycle")  # by channel number
HEAD_CACHE = 100_000


class Generator:
    """Seeded event source over a :class:`MarketTable` and its :class:`Books`."""

    def __init__(
        self,
        markets: MarketTable,
        books: Books,
        seed: int,
        rate: float,
        identical_share: float = 0.05,
        churn_per_s: float = 0.0,
        trade_share: float = 0.05,
        ticker_share: float = 0.10,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.markets = markets
        self.books = books
        self.rng = random.Random(seed)
        self.identical_share = identical_share
        self.trade_share = trade_share
        self.ticker_share = ticker_share
        self.churn_per_s = churn_per_s
        self.next_id = 1
        self.emitted = 0
        self._rate = rate
        self._t0_count = 0
        self._t0_ms = float(markets.base_ts_ms)
        self._since_churn = 0
        self.identical = 0  # identical-body deltas emitted so far
        self._rfc_secs = -1
        self._heads: dict[int, str] = {}  # delta body prefix per (hot) market
        self._rfc_text = ""
        books.grow(len(markets))

    @property
    def rate(self) -> float:
        return self._rate

    def set_rate(self, rate: float) -> None:
        """Change the rate for future events (part of the reproducible schedule)."""
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self._t0_ms = self._vclock()
        self._t0_count = self.emitted
        self._rate = rate

    def _vclock(self) -> float:
        return self._t0_ms + (self.emitted - self._t0_count) * 1000.0 / self._rate

    def skip(self, n: int) -> None:
        """Let ``n`` event slots pass without events (the venue fell behind): keeps ts_ms near wall time.

        Consumes no randomness, so the sequence of event bodies stays that of the seed."""
        self.emitted += n

    def now_ms(self) -> int:
        """Virtual time of the next event."""
        return int(self._vclock())

    def _event(self, out: list[Event], ch: int, m: int, ts: int, body: str, body_yes: str | None = None) -> None:
        out.append((self.next_id, ch, m, ts, body, body_yes))
        self.next_id += 1
        self.emitted += 1

    # -- lifecycle ---------------------------------------------------------------------------------
    def create_market(self, out: list[Event]) -> int:
        """List a new market: ``created`` then ``activated``; returns its index."""
        ts = self.now_ms()
        m = self.markets.add(ts)
        self.books.grow(len(self.markets))
        t = self.markets.ticker(m)
        open_s = ts // 1000
        close_s = self.markets.close_ms(m) // 1000
        meta = (
            f'{{"name":"Simulated market {m}","title":"Simulated market {m}",'
            f'"yes_sub_title":"Outcome {m} happens","no_sub_title":"Outcome {m} does not happen",'
            f'"rules_primary":"Resolves Yes if outcome {m} happens.","rules_secondary":"",'
            f'"can_close_early":true,"event_ticker":"{self.markets.event_ticker(m)}",'
            f'"expected_expiration_ts":{close_s}}}'
        )
        self._event(
            out,
            CH_LIFECYCLE,
            m,
            ts,
            f'{{"market_ticker":"{t}","event_type":"created","open_ts":{open_s},"close_ts":{close_s},'
            f'"additional_metadata":{meta}}}',
        )
        self.markets.status[m] = ST_ACTIVE
        self._event(
            out, CH_LIFECYCLE, m, ts, f'{{"market_ticker":"{t}","event_type":"activated","is_deactivated":false}}'
        )
        return m

    def settle_market(self, m: int, out: list[Event], result: str | None = None) -> bool:
        """Determine and settle market ``m`` (no-op, False, if already determined/settled)."""
        if self.markets.status[m] in (ST_DETERMINED, ST_FINALIZED):
            return False
        ts = self.now_ms()
        result = result or ("yes" if self.rng.random() < 0.5 else "no")
        value = "1.0000" if result == "yes" else "0.0000"
        t = self.markets.ticker(m)
        self.markets.status[m] = ST_DETERMINED
        self.markets.results[m] = result
        self._event(
            out,
            CH_LIFECYCLE,
            m,
            ts,
            f'{{"market_ticker":"{t}","event_type":"determined","result":"{result}",'
            f'"settlement_value":"{value}","determination_ts":{ts // 1000}}}',
        )
        self.markets.status[m] = ST_FINALIZED
        settled = f'{{"market_ticker":"{t}","event_type":"settled","settled_ts":{ts // 1000}}}'
        self._event(out, CH_LIFECYCLE, m, ts, settled)
        return True

    def _churn(self, out: list[Event]) -> None:
        self.create_market(out)
        n = len(self.markets)
        for _ in range(8):
            m = self.rng.randrange(n)
            if m >= 10 and self.markets.status[m] == ST_ACTIVE:
                self.settle_market(m, out)
                return

    # -- market data -------------------------------------------------------------------------------
    def _pick(self) -> int:
        status = self.markets.status
        n1 = len(status) + 1
        rnd = self.rng.random
        for _ in range(6):
            m = int(n1 ** rnd()) - 1
            if status[m] == ST_ACTIVE:
                return m
        return -1

    def generate(self, n: int) -> list[Event]:
        """The next ``n`` (or a few more: a trade brings its ticker) events."""
        out: list[Event] = []
        rnd = self.rng.random
        p_delta = 1.0 - self.trade_share - self.ticker_share
        p_trade = p_delta + self.trade_share
        churn_every = int(self._rate / self.churn_per_s) if self.churn_per_s > 0 else 0
        target = self.emitted + n
        while self.emitted < target:
            if churn_every:
                self._since_churn += 1
                if self._since_churn >= churn_every:
                    self._since_churn = 0
                    self._churn(out)
                    continue
            m = self._pick()
            if m < 0:
                self.emitted += 1  # an idle slot keeps the virtual clock moving
                continue
            ts = int(self._vclock())
            r = rnd()
            if r < p_delta:
                self._delta(out, m, ts)
            elif r < p_trade:
                self._trade(out, m, ts)
                self._ticker(out, m, ts)
            else:
                self._ticker(out, m, ts)
        return out

    def _delta(self, out: list[Event], m: int, ts: int) -> None:
        rnd = self.rng.random
        books = self.books
        levels = books.levels
        base = m * SLOTS if books.touched[m] else books.touch(m)
        mid = books.mids[m]
        side_no = 1 if rnd() < 0.5 else 0
        k = int(rnd() * LEVEL_SPAN)
        slot = base + k + LEVEL_SPAN * side_no
        price = (99 - mid - k) if side_no else (mid - 1 - k)
        cur = levels[slot]
        if cur and rnd() < 0.45:
            delta = -cur if rnd() < 0.3 else -(1 + int(rnd() * cur))
        elif rnd() < 0.9:
            delta = 100 * (1 + int(rnd() * 20))
        else:
            delta = 1 + int(rnd() * 5000)
        levels[slot] = cur + delta
        body, body_yes = self._delta_body(m, side_no, price, delta, ts)
        self._event(out, CH_ORDERBOOK, m, ts, body, body_yes)
        # Identical-body twin (same market, side, price, delta and ts_ms): a real venue produces these when two
        # orders change one level by the same amount within the same millisecond, so the twin follows at once.
        if self.identical_share > 0 and rnd() < self.identical_share and (delta > 0 or levels[slot] >= -delta):
            levels[slot] += delta
            self.identical += 1
            self._event(out, CH_ORDERBOOK, m, ts, body, body_yes)

    def _delta_body(self, m: int, side_no: int, price: int, delta: int, ts: int) -> tuple[str, str | None]:
        head = self._heads.get(m)
        if head is None:
            if len(self._heads) >= HEAD_CACHE:
                self._heads.clear()
            markets = self.markets
            head = f'{{"market_ticker":"{markets.ticker(m)}","market_id":"{markets.market_id(m)}","price_dollars":"'
            self._heads[m] = head
        if side_no:
            tail = f'","delta_fp":"{count_fp(delta)}","side":"no","ts_ms":{ts}}}'
            return f"{head}{PRICE[price]}{tail}", f"{head}{PRICE[100 - price]}{tail}"
        return f'{head}{PRICE[price]}","delta_fp":"{count_fp(delta)}","side":"yes","ts_ms":{ts}}}', None

    def _trade(self, out: list[Event], m: int, ts: int) -> None:
        rnd = self.rng.random
        books = self.books
        books.touch(m)
        yes_bid, yes_ask, _, _ = books.top(m)
        taker = "yes" if rnd() < 0.5 else "no"
        yes_price = min(max(yes_ask if taker == "yes" else yes_bid, 1), 99)
        count = 100 * (1 + int(rnd() * 10))
        books.last_price[m] = yes_price
        books.volume[m] += count
        books.open_interest[m] += count
        books.last_trade[m] = count
        trade_id = uuid.UUID(int=self.rng.getrandbits(128), version=4)
        body = (
            f'{{"trade_id":"{trade_id}","market_ticker":"{self.markets.ticker(m)}",'
            f'"yes_price_dollars":"{PRICE[yes_price]}","no_price_dollars":"{PRICE[100 - yes_price]}",'
            f'"count_fp":"{count_fp(count)}","taker_side":"{taker}","taker_outcome_side":"{taker}",'
            f'"taker_book_side":"bid","is_block_trade":false,"ts":{ts // 1000},"ts_ms":{ts}}}'
        )
        self._event(out, CH_TRADE, m, ts, body)

    def ticker_body(self, m: int, ts: int) -> str:
        books = self.books
        yes_bid, yes_ask, bid_size, ask_size = books.top(m)
        last = books.last_price[m] if books.touched[m] else books.mid(m)
        vol = books.volume[m]
        oi = books.open_interest[m]
        secs = ts // 1000
        if secs != self._rfc_secs:
            self._rfc_secs, self._rfc_text = secs, rfc3339(secs * 1000)
        return (
            f'{{"market_id":"{self.markets.market_id(m)}","market_ticker":"{self.markets.ticker(m)}",'
            f'"price_dollars":"{PRICE[last]}","yes_bid_dollars":"{PRICE[yes_bid]}",'
            f'"yes_ask_dollars":"{PRICE[yes_ask]}","yes_bid_size_fp":"{count_fp(bid_size)}",'
            f'"yes_ask_size_fp":"{count_fp(ask_size)}","last_trade_size_fp":"{count_fp(books.last_trade[m])}",'
            f'"volume_fp":"{count_fp(vol)}","open_interest_fp":"{count_fp(oi)}",'
            f'"dollar_volume":{vol * last // 10000},"dollar_open_interest":{oi * last // 10000},'
            f'"ts":{secs},"ts_ms":{ts},"time":"{self._rfc_text}"}}'
        )

    def _ticker(self, out: list[Event], m: int, ts: int) -> None:
        self._event(out, CH_TICKER, m, ts, self.ticker_body(m, ts))
