"""Load model: reproducibility, skew, identical deltas, books never negative or crossed."""

from __future__ import annotations

import itertools
from collections import Counter

from venue_sim.book import Books
from venue_sim.load import Generator
from venue_sim.markets import ST_ACTIVE, ST_FINALIZED, MarketTable
from venues import default_name, get_venue

WIRE = get_venue(default_name()).emulator_wire()  # the truth format the generator writes
CH_LIFECYCLE, CH_ORDERBOOK = WIRE.CH_LIFECYCLE, WIRE.CH_ORDERBOOK


def _gen(markets: int = 200, seed: int = 7, **kw: float) -> Generator:
    table = MarketTable(markets, seed, 1_700_000_000_000)
    return Generator(table, Books(seed), seed=seed, rate=1000.0, **kw)  # type: ignore[arg-type]


def test_same_seed_same_events() -> None:
    a = _gen(churn_per_s=5.0).generate(5000)
    b = _gen(churn_per_s=5.0).generate(5000)
    assert a == b
    assert _gen(seed=8).generate(100) != a[:100]


def test_rate_schedule_drives_virtual_clock() -> None:
    g = _gen()
    first = g.generate(1000)
    assert first[0][3] == 1_700_000_000_000
    g.set_rate(100.0)
    nxt = g.generate(100)
    assert 1_700_000_000_990 <= nxt[0][3] <= 1_700_000_001_010
    assert nxt[-1][3] - nxt[0][3] >= 900  # 100 events at 100/s span about a second


def test_activity_is_skewed() -> None:
    events = _gen(markets=10_000, identical_share=0.0).generate(20_000)
    per_market = Counter(ev[2] for ev in events)
    top10 = sum(n for _, n in per_market.most_common(10))
    assert top10 > 0.2 * len(events)
    assert len(per_market) > 1000  # the tail is still visited


def test_books_stay_valid_and_identical_share_is_honoured() -> None:
    g = _gen(markets=50, identical_share=0.2)
    events = g.generate(30_000)
    deltas = [ev for ev in events if ev[1] == CH_ORDERBOOK]
    repeats = sum(1 for a, b in itertools.pairwise(deltas) if a[4] == b[4])
    assert g.identical > 0.1 * len(deltas)
    assert repeats > 0
    for m in range(50):
        book = g.books.peek(m)
        assert all(v > 0 for v in book.yes.values()) and all(v > 0 for v in book.no.values())
        yes_bid, yes_ask, _, _ = book.top()
        assert yes_bid < yes_ask


def test_churn_creates_and_settles_markets() -> None:
    g = _gen(markets=100, churn_per_s=50.0)
    events = g.generate(2000)
    kinds = Counter(ev[4].split('"event_type":"')[1].split('"')[0] for ev in events if ev[1] == CH_LIFECYCLE)
    assert kinds["created"] == kinds["activated"] > 0
    assert kinds["determined"] == kinds["settled"] > 0
    assert len(g.markets) == 100 + kinds["created"]
    assert g.markets.status.count(ST_FINALIZED) == kinds["settled"]
    settled = {ev[2] for ev in events if ev[1] == CH_LIFECYCLE and '"settled"' in ev[4]}
    assert all(g.markets.status[m] != ST_ACTIVE for m in settled)
