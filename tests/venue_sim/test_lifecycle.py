"""Real-venue behaviours at generator level (no sockets): dormant markets, pause cycles with identical bodies at
very different spacings, metadata in both forms, unknown types, event-level messages, created-then-activated
markets, bad numbers, and book checkpoints that hold exactly the deltas up to their time."""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from decimal import Decimal
from typing import Any

import pytest

from venue_sim.book import SLOTS, Books
from venue_sim.lifecycle import BAD_NUMBER_VARIANTS, Behaviours
from venue_sim.load import Event, Generator
from venue_sim.markets import ST_ACTIVE, ST_INACTIVE, ST_INITIALIZED, MarketTable
from venues import default_name, get_venue

WIRE = get_venue(default_name()).emulator_wire()  # the truth format the generator writes
CH_EVENT_FEE, CH_EVENT_LIFECYCLE, CH_LIFECYCLE, CH_ORDERBOOK = (
    WIRE.CH_EVENT_FEE,
    WIRE.CH_EVENT_LIFECYCLE,
    WIRE.CH_LIFECYCLE,
    WIRE.CH_ORDERBOOK,
)

BASE = 1_700_000_000_000
LEVEL_NO = 10  # NO ladder offset in a book's 20 slots


def _gen(
    markets: int = 300, seed: int = 7, rate: float = 1000.0, churn: float = 0.0, identical: float = 0.05, **kw: Any
) -> Generator:
    table = MarketTable(markets, seed, BASE)
    behaviours = Behaviours(**kw)
    return Generator(
        table, Books(seed), seed=seed, rate=rate, churn_per_s=churn, identical_share=identical, behaviours=behaviours
    )


def _run(g: Generator, n: int, chunk: int = 1000) -> list[Event]:
    out: list[Event] = []
    while n > 0:
        out += g.generate(min(chunk, n))
        n -= chunk
    return out


def _data(ev: Event) -> bool:
    return ev[1] in (0, 1, 2)


def test_dormant_markets_never_get_data_but_still_get_lifecycle() -> None:
    g = _gen(markets=1000, churn=5.0, dormant_share=0.7)
    events = _run(g, 30_000)
    assert g.live_count == 300
    data_markets = {ev[2] for ev in events if _data(ev)}
    initial_data = {m for m in data_markets if m < 1000}
    assert initial_data and max(initial_data) < 300, "no data event for a dormant market"
    assert len(initial_data) > 100
    settled = {ev[2] for ev in events if ev[1] == CH_LIFECYCLE and '"settled"' in ev[4]}
    assert any(300 <= m < 1000 for m in settled), "dormant markets still get lifecycle messages"
    assert any(m >= 1000 for m in data_markets), "markets created while running trade"


def test_all_dormant_venue_sends_no_data() -> None:
    g = _gen(markets=50, dormant_share=1.0)
    assert [ev for ev in _run(g, 2000) if _data(ev)] == []


def test_pause_cycles_repeat_identical_bodies_at_very_different_spacings() -> None:
    g = _gen(markets=400, rate=200.0, pause_per_s=0.5, pause_markets=4, pause_ms=2000, flap_share=0.3)
    events = _run(g, 160_000)  # 800 s of venue time
    paused: dict[int, list[tuple[int, str, int]]] = defaultdict(list)
    for ev in events:
        if ev[1] == CH_LIFECYCLE:
            kind = json.loads(ev[4])["event_type"]
            paused[ev[2]].append((ev[3], kind, ev[0]))
    assert set(paused) == set(g._pause_pool) and len(paused) == 4
    data_ids: dict[int, list[int]] = defaultdict(list)
    for ev in events:
        if _data(ev) and ev[2] in paused:
            data_ids[ev[2]].append(ev[0])
    spacings = []
    for m, changes in paused.items():
        kinds = [k for _, k, _ in changes]
        assert all(a != b for a, b in itertools.pairwise(kinds)), "strictly alternating"
        assert kinds[0] == "deactivated"
        bodies = {ev[4] for ev in events if ev[1] == CH_LIFECYCLE and ev[2] == m}
        assert len(bodies) == 2, "every deactivation (and activation) of a market is the same body"
        starts = [ts for ts, k, _ in changes if k == "deactivated"]
        spacings += [b - a for a, b in itertools.pairwise(starts)]
        # no data while paused
        for (_, _, off), (_, _, on) in zip(changes[0::2], changes[1::2], strict=False):
            assert not [i for i in data_ids[m] if off < i < on]
        assert data_ids[m], "pool markets trade while active"
    assert min(spacings) <= 60, "a flap repeats the body within ~50 ms"
    assert any(5_000 <= s <= 30_000 for s in spacings), "some repeats ~15 s apart"
    assert max(spacings) >= 60_000, "some repeats minutes apart"
    assert g.counts["paused"] > 300 and g.counts["flaps"] > 80
    assert g.markets.status.count(ST_INACTIVE) == g.counts["paused"] - g.counts["resumed"]


def test_metadata_updates_in_both_forms_flip_flop_and_repeat() -> None:
    g = _gen(metadata_per_s=5.0)
    events = [ev for ev in _run(g, 60_000) if ev[1] == CH_LIFECYCLE]
    msgs = [(ev[2], ev[4]) for ev in events]
    with_type = [b for _, b in msgs if '"event_type":"metadata_updated"' in b]
    legacy = [b for _, b in msgs if '"event_type"' not in b]
    assert with_type and legacy and len(with_type) + len(legacy) == len(msgs)
    for body in legacy:
        obj = json.loads(body)
        assert set(obj) >= {"market_ticker", "yes_sub_title", "floor_strike"}
    per_market: dict[int, list[str]] = defaultdict(list)
    for m, b in msgs:
        per_market[m].append(b)
    for bodies in per_market.values():
        if len(bodies) >= 3:
            assert bodies[0] == bodies[2] != bodies[1], "A, B, A"
    assert Counter(b for _, b in msgs).most_common(1)[0][1] >= 5


def test_unknown_lifecycle_types_and_event_level_messages() -> None:
    g = _gen(markets=100, churn=2.0, unknown_per_s=1.0, fee_update_per_s=2.0, event_lifecycle=True)
    events = _run(g, 40_000)
    unknown = [json.loads(ev[4]) for ev in events if ev[1] == CH_LIFECYCLE and "hours" in ev[4]]
    assert len(unknown) >= 20
    assert {u["event_type"] for u in unknown} == {"trading_hours_updated", "collateral_terms_updated"}
    fees = [ev for ev in events if ev[1] == CH_EVENT_FEE]
    assert len(fees) >= 40
    on = '"fee_type_override":"quadratic","fee_multiplier_override":1'
    off = '"fee_type_override":null,"fee_multiplier_override":null'
    by_event: dict[str, list[bool]] = defaultdict(list)
    for ev in fees:
        obj = json.loads(ev[4])
        assert set(obj) == {"event_ticker", "fee_type_override", "fee_multiplier_override"}
        assert (on in ev[4]) != (off in ev[4])
        by_event[obj["event_ticker"]].append(on in ev[4])
        assert g.markets.event_ticker(ev[2]) == obj["event_ticker"]
    for states in by_event.values():
        assert states == [i % 2 == 0 for i in range(len(states))], "set, clear, set, ..."
    assert Counter(ev[4] for ev in fees).most_common(1)[0][1] >= 5, "identical fee bodies repeat"
    new_events = [ev for ev in events if ev[1] == CH_EVENT_LIFECYCLE]
    created = [ev for ev in events if ev[1] == CH_LIFECYCLE and '"created"' in ev[4]]
    assert len(created) == g.counts["created"] >= 15
    assert len(new_events) == len({g.markets.event_ticker(ev[2]) for ev in created}) >= 2
    for ev in new_events:
        obj = json.loads(ev[4])
        assert obj["event_ticker"] == g.markets.event_ticker(ev[2]) and "market_ticker" not in obj
        first = next(c for c in created if g.markets.event_ticker(c[2]) == obj["event_ticker"])
        assert first[0] == ev[0] + 1, "event_lifecycle comes right before the event's first created market"


def test_created_markets_are_activated_later_and_trade_only_then() -> None:
    g = _gen(markets=100, churn=2.0, activate_after_ms=3000)
    events = _run(g, 30_000)
    created = {ev[2]: ev[3] for ev in events if ev[1] == CH_LIFECYCLE and '"created"' in ev[4]}
    activated = {ev[2]: ev[3] for ev in events if ev[1] == CH_LIFECYCLE and '"activated"' in ev[4]}
    assert len(created) >= 50
    for m, t in created.items():
        if m in activated:
            assert 3000 <= activated[m] - t <= 3010
            assert not [ev for ev in events if _data(ev) and ev[2] == m and ev[3] < activated[m]]
    last_ts = events[-1][3]
    pending = [m for m, t in created.items() if t + 3000 > last_ts]
    assert pending and all(g.markets.status[m] == ST_INITIALIZED for m in pending if m not in activated)
    assert sum(1 for ev in events if _data(ev) and ev[2] in activated) > 0


def test_status_changes_leave_market_live_facts() -> None:
    g = _gen(markets=100, churn=5.0, pause_per_s=5.0, pause_markets=3, activate_after_ms=500)
    events = _run(g, 20_000)
    by_id = {ev[0]: ev for ev in events}
    facts = [f for f in g.facts if f[0] == "live"]
    assert {f[4] for f in facts} == {"created", "activated", "deactivated", "determined", "settled"}
    for _, m, event_id, live, kind in facts:
        ev = by_id[event_id]
        assert ev[2] == m and ev[1] == CH_LIFECYCLE and f'"event_type":"{kind}"' in ev[4]
        assert live == (kind in ("created", "activated"))


@pytest.mark.parametrize("variant", BAD_NUMBER_VARIANTS)
def test_bad_number_delta_takes_an_id_but_does_not_change_the_book(variant: str) -> None:
    g = _gen(markets=20)
    _run(g, 2000)
    before = [g.books.slots(m) for m in range(20)]
    out: list[Event] = []
    event_id = g.bad_delta(out, variant)
    assert [ev[0] for ev in out] == [event_id] and out[0][1] == CH_ORDERBOOK
    assert [g.books.slots(m) for m in range(20)] == before
    assert g.facts[-1][:2] == ("bad", event_id)
    msg = json.loads(out[0][4])  # the JSON itself is valid
    assert set(msg) == {"market_ticker", "market_id", "price_dollars", "delta_fp", "side", "ts_ms"}
    price, delta = Decimal(msg["price_dollars"]), Decimal(msg["delta_fp"])
    in_range = 0 <= price <= 1 and delta.is_finite() and abs(delta) < Decimal(10) ** 12
    assert not in_range, msg
    if variant == "digits":
        assert len(msg["delta_fp"]) > 5000
    with pytest.raises(ValueError):
        g.bad_delta(out, "nonsense")


def test_checkpoints_hold_exactly_the_deltas_up_to_their_time() -> None:
    g = _gen(markets=200, rate=2000.0, churn=3.0, checkpoint_ms=1000, identical=0.1)
    events: list[Event] = []
    for _ in range(30):
        events += g.generate(250)
        out: list[Event] = []
        g.bad_delta(out)  # bad numbers never move a book
        events += out
    g.final_checkpoint()
    bad = {f[1] for f in g.facts if f[0] == "bad"}
    books = [f[1] for f in g.facts if f[0] == "book"]
    assert len(books) >= 4
    fresh = Books(7)
    fresh.grow(len(g.markets))
    for at_ms, after_id, markets, slots in books:
        assert all(ev[3] <= at_ms for ev in events if ev[0] <= after_id)
        assert all(ev[3] > at_ms for ev in events if ev[0] > after_id)
        replayed: dict[int, list[int]] = {}
        for ev in events:
            if ev[1] != CH_ORDERBOOK or ev[3] > at_ms or ev[0] in bad:
                continue
            msg = json.loads(ev[4])
            m = ev[2]
            book = replayed.setdefault(m, fresh.initial_slots(m))
            mid = fresh.mid(m)
            cents = int(Decimal(msg["price_dollars"]) * 100)
            k = (mid - 1 - cents) if msg["side"] == "yes" else (LEVEL_NO + 99 - mid - cents)
            book[k] += int(Decimal(msg["delta_fp"]) * 100)
        assert sorted(markets) == sorted(replayed), "every market with a delta so far, and only those"
        for k, m in enumerate(markets):
            assert slots[k * SLOTS : (k + 1) * SLOTS].tolist() == replayed[m]


def test_same_seed_same_events_with_every_behaviour_on() -> None:
    kw: dict[str, Any] = {
        "churn": 3.0,
        "dormant_share": 0.5,
        "activate_after_ms": 700,
        "pause_per_s": 2.0,
        "metadata_per_s": 2.0,
        "unknown_per_s": 1.0,
        "fee_update_per_s": 1.0,
        "event_lifecycle": True,
    }
    a = _run(_gen(**kw), 20_000)
    b = _run(_gen(**kw), 20_000)
    assert a == b
    assert {ev[1] for ev in a} == {0, 1, 2, 3, 4, 5}
    assert [ev[0] for ev in a] == list(range(1, len(a) + 1))
    assert all(x[3] <= y[3] for x, y in itertools.pairwise(a)), "venue time never goes back"


def test_lifecycle_on_demand_respects_status() -> None:
    g = _gen(markets=30)
    out: list[Event] = []
    assert not g.lifecycle_now(out, "activate", 3)
    assert g.lifecycle_now(out, "deactivate", 3) and g.markets.status[3] == ST_INACTIVE
    assert not g.lifecycle_now(out, "deactivate", 3)
    assert g.lifecycle_now(out, "activate", 3) and g.markets.status[3] == ST_ACTIVE
    for action in ("metadata", "metadata_legacy", "unknown", "fee_set", "fee_clear"):
        assert g.lifecycle_now(out, action, 3)
    assert [ev[1] for ev in out] == [3, 3, 3, 3, 3, CH_EVENT_FEE, CH_EVENT_FEE]
    with pytest.raises(ValueError):
        g.lifecycle_now(out, "explode", 3)


def test_without_periodic_checkpoints_the_final_one_is_still_taken() -> None:
    g = _gen(markets=30)
    events = _run(g, 3000)
    assert not [f for f in g.facts if f[0] == "book"]
    g.final_checkpoint()
    (_, (at_ms, after_id, markets, _)) = g.facts[-1]
    assert after_id == events[-1][0] and at_ms >= events[-1][3]
    assert sorted(markets) == sorted({ev[2] for ev in events if ev[1] == CH_ORDERBOOK})
