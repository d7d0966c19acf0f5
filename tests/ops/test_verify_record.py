"""The venue record's index (ops.verify_record) against a step-by-step replay of the same records."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ops.verify_record import CHANNEL_OF_KIND, VenueRecord, gatherer_of_client
from venue_sim.record import ConnClosed, ConnOpened, MarketLive, Record, Subscribed, Suppressed, Unsubscribed

MARKETS = ("A", "B", "C")
CHANNEL_OF_SID = {1: "orderbook_delta", 2: "trade", 3: "market_lifecycle_v2"}
KIND_OF_CHANNEL = {c: k for k, c in CHANNEL_OF_KIND.items()}
CLIENTS = ("mdpipe-gather/g1", "mdpipe-gather/g2", "mdpipe-gather/g3", "curl/8.0")

markets = st.sets(st.sampled_from((*MARKETS, "*")), min_size=1, max_size=2)
conn = st.integers(0, 4)
sid = st.sampled_from((1, 2, 3))
event = st.tuples(st.just("event"), st.sampled_from(MARKETS), st.sampled_from(tuple(CHANNEL_OF_SID.values())))
subscribe = st.tuples(st.just("sub"), conn, sid, markets)
suppress = st.tuples(st.just("suppress"), conn, sid, st.integers(0, 3))  # the n-th last event
op = st.one_of(  # repeated strategies are drawn more often: runs with many deliveries, few closed connections
    event,
    event,
    event,
    event,
    subscribe,
    subscribe,
    subscribe,
    suppress,
    suppress,
    st.tuples(st.just("unsub"), conn, sid, markets),
    st.tuples(st.just("close"), conn),
    st.tuples(st.just("connect"), st.sampled_from(CLIENTS)),
)


def replay(ops: list[tuple]) -> tuple[list[Record], list[tuple[int, str, str]], dict[int, frozenset[str]]]:
    """The records the ops produce, the events (id, channel, market) and who each event reached (by a naive
    replay that keeps the open subscriptions as sets, checking suppressions last)."""
    records: list[Record] = [ConnOpened(conn, client, 0, 0) for conn, client in enumerate(CLIENTS)]
    events: list[tuple[int, str, str]] = []
    conns: list[str] = list(CLIENTS)  # conn index -> client
    open_: dict[tuple[int, int], set[str]] = {}  # (conn, sid) -> markets
    for c in range(len(CLIENTS)):  # every client starts subscribed: book of A and B, all trades, all lifecycle
        ops = [("sub", c, 1, {"A", "B"}), ("sub", c, 2, {"*"}), ("sub", c, 3, {"*"}), *ops]
    closed: set[int] = set()
    reached: dict[int, list[tuple[int, int]]] = {}  # event id -> (conn, sid) it was sent on
    for o in ops:
        if o[0] == "connect":
            conns.append(o[1])
            records.append(ConnOpened(len(conns) - 1, o[1], 0, len(events)))
        elif o[0] in ("sub", "unsub", "suppress", "close") and (o[1] >= len(conns) or o[1] in closed):
            continue
        elif o[0] == "sub":
            open_.setdefault((o[1], o[2]), set()).update(o[3])
            records.append(Subscribed(o[1], o[2], CHANNEL_OF_SID[o[2]], sorted(o[3]), len(events), 0))
        elif o[0] == "unsub":
            markets = open_.get((o[1], o[2]), set())
            if "*" in o[3]:
                markets.clear()
            else:
                markets -= o[3]
            records.append(Unsubscribed(o[1], o[2], CHANNEL_OF_SID[o[2]], sorted(o[3]), len(events), 0))
        elif o[0] == "close":
            closed.add(o[1])
            for key in [k for k in open_ if k[0] == o[1]]:
                del open_[key]
            records.append(ConnClosed(o[1], 0, len(events)))
        elif o[0] == "event":
            event_id = len(events) + 1
            events.append((event_id, o[2], o[1]))
            reached[event_id] = [
                key
                for key, markets in open_.items()
                if CHANNEL_OF_SID[key[1]] == o[2] and (o[1] in markets or "*" in markets)
            ]
        elif o[0] == "suppress" and len(events) > o[3]:
            records.append(Suppressed(o[1], o[2], [len(events) - o[3]], "drop"))
    suppressed = {(r.conn, r.sid, i) for r in records if isinstance(r, Suppressed) for i in r.ids}
    delivered = {
        event_id: frozenset(
            g
            for conn, sid in keys
            if (conn, sid, event_id) not in suppressed and (g := gatherer_of_client(conns[conn])) is not None
        )
        for event_id, keys in reached.items()
    }
    return records, events, delivered


@settings(max_examples=400, deadline=None)
@given(st.lists(op, min_size=25, max_size=80))
def test_delivered_equals_a_step_by_step_replay(ops: list[tuple]) -> None:
    records, events, expected = replay(ops)
    record = VenueRecord.build(records)
    for event_id, channel, market in events:
        assert record.delivered(channel, market, event_id) == expected[event_id], (event_id, channel, market)


def test_first_subscription_takes_the_earliest_of_named_and_all_markets_sids() -> None:
    record = VenueRecord.build(
        [
            ConnOpened(1, "mdpipe-gather/g1", 100, 0),
            ConnOpened(2, "python-websockets", 50, 0),
            Subscribed(2, 1, "trade", ["A"], 1, 110),  # not a gatherer: does not count
            Subscribed(1, 1, "trade", ["A"], 5, 120),
            Subscribed(1, 2, "trade", ["*"], 3, 115),
            Subscribed(1, 3, "orderbook_delta", ["B"], 2, 112),
        ]
    )
    assert record.first_subscription("trade", "A") == record.first_subscription("trade", "Z")
    assert record.first_subscription("trade", "A").after_id == 3  # type: ignore[union-attr]
    assert record.first_subscription("orderbook_delta", "B").at_ns == 112  # type: ignore[union-attr]
    assert record.first_subscription("orderbook_delta", "A") is None
    assert record.first_gatherer_ns == 100 and record.gatherers == ("g1",)


def test_market_live_state_in_id_order() -> None:
    record = VenueRecord.build(
        [MarketLive("A", 10, 1, True), MarketLive("A", 20, 2, False), MarketLive("B", 0, 3, False)]
    )
    assert [record.live("A", i) for i in (10, 11, 20, 21)] == [False, True, True, False]
    assert record.live("B", 1) is False and record.live("Z", 1) is True  # no record: live (nothing excused)
    assert record.first_live_ns == {"A": 1}


def test_gatherer_named_anywhere_in_the_user_agent() -> None:
    assert gatherer_of_client("mdpipe-gather/g2") == "g2"
    assert gatherer_of_client("Python/3.11 mdpipe-gather/g-3 websockets/14") == "g-3"
    assert gatherer_of_client("xmdpipe-gather/g1") is None and gatherer_of_client("") is None
