"""Per-hop latency (ops.hops, ops.hops_read): hop arithmetic, pairing with the venue's events, the join of the
events topic with the sink's trace, exact percentiles."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from ops.hops import HOPS, TOTAL, HopJoin, Trip, distribution, format_hops, format_kinds, hop_values
from ops.hops_read import CommitIndex, TripStats, trips_from_records
from ops.verify import identity
from schemas import BookDelta, BookSnapshot, Trade, encode_event
from sink.trace import TraceEntry
from venues import default_name

VENUE = default_name()  # the venue whose name the records carry (any known venue)

MS = 1_000_000
T0 = 1_767_225_600_000 * MS  # a venue time, ns


def test_each_hop_is_the_difference_of_its_own_two_boundaries() -> None:
    # every boundary a distinct distance from the previous one: a hop taken between the wrong boundaries shows
    trip = Trip("k", recv_ns=T0 + 2 * MS, raw_ns=T0 + 5 * MS, dedup_ns=T0 + 12 * MS, events_ns=T0 + 23 * MS,
                read_ns=T0 + 40 * MS, commit_ns=T0 + 71 * MS)  # fmt: skip
    assert hop_values(T0, trip) == [2.0, 3.0, 7.0, 11.0, 17.0, 31.0, 71.0]
    assert len(HOPS) == 6


def test_unknown_boundaries_leave_their_hops_out() -> None:
    trip = Trip("k", recv_ns=T0 + MS, raw_ns=0, dedup_ns=T0 + 3 * MS, events_ns=T0 + 4 * MS)  # older producer, no trace
    assert hop_values(T0, trip) == [1.0, None, None, 1.0, None, None, None]


@given(st.integers(0, 10**12), st.lists(st.integers(0, 10**10), min_size=6, max_size=6))
def test_hops_add_up_to_the_whole_trip(gen: int, steps: list[int]) -> None:
    stamps = [T0 + gen]
    for step in steps:
        stamps.append(stamps[-1] + step)
    values = hop_values(stamps[0], Trip("k", *stamps[1:]))
    assert all(v is not None and v >= 0 for v in values)
    assert abs(sum(values[:-1]) - values[-1]) < 1e-3  # type: ignore[arg-type, operator]


def test_distribution_is_exact_nearest_rank() -> None:
    values = [float(v) for v in range(1000, 0, -1)]  # 1..1000 ms, unsorted
    assert distribution(values) == {"p50": 501.0, "p99": 990.0, "max": 1000.0, "count": 1000}
    assert distribution([]) == {}
    assert distribution([4.26]) == {"p50": 4.3, "p99": 4.3, "max": 4.3, "count": 1}


def _trip(key: str, recv_ms: int, commit_ms: int) -> Trip:
    return Trip(key, T0 + recv_ms * MS, T0 + (recv_ms + 1) * MS, T0 + (recv_ms + 2) * MS, T0 + (recv_ms + 3) * MS,
                T0 + (recv_ms + 4) * MS, T0 + commit_ms * MS)  # fmt: skip


def test_identical_events_pair_in_order_and_a_reemit_counts_once() -> None:
    ident = ("delta", "M", "yes", Decimal("0.5"), Decimal("1"), 1)
    trips = {
        # two distinct events with one identity (identical bodies), the first one also re-emitted after a crash
        ident: [_trip("d#2", 30, 50), _trip("d#1", 10, 90), _trip("d#1", 10, 20)],
        ("trade", "t-1"): [_trip("t", 5, 9)],
    }
    join = HopJoin(trips, windows={"all": (0, 2**63 - 1), "late": (T0 + 7 * MS, 2**63 - 1)}, marks=(T0 + 7 * MS,))
    join.observe(("trade", "t-1"), T0 + 1 * MS)
    join.observe(ident, T0 + 5 * MS)  # pairs with d#1 received at 10, as committed first (at 20)
    join.observe(ident, T0 + 8 * MS)  # pairs with d#2
    join.observe(ident, T0 + 9 * MS)  # no third event of that identity in the pipeline
    join.observe(None, T0)  # an event whose body did not decode
    assert (join.paired, join.unpaired) == (3, 2)
    table = join.table()
    assert table[TOTAL] == {"p50": 15.0, "p99": 42.0, "max": 42.0, "count": 3}  # 9-1, 20-5, 50-8
    assert table["venue->gatherer"]["max"] == 22.0  # 30 - 8
    assert join.table("late")[TOTAL] == {"p50": 42.0, "p99": 42.0, "max": 42.0, "count": 1}
    assert join.first_after(0) == {"gen": T0 + 8 * MS, "recv": T0 + 30 * MS, "raw": T0 + 31 * MS,
                                   "dedup": T0 + 32 * MS, "events": T0 + 33 * MS, "read": T0 + 34 * MS,
                                   "commit": T0 + 50 * MS}  # fmt: skip


def test_events_records_and_the_trace_make_trips() -> None:
    common = {"venue": VENUE, "market": "KXM-1", "gatherer": "g2"}
    delta = BookDelta(**common, event_key="d:1#1", ts_ms=1_767_225_600_000, recv_ns=T0 + 3 * MS, side="yes",
                      price=Decimal("0.4300"), delta=Decimal("5"), raw_ts_ms=1_767_225_600_009,
                      dedup_ns=T0 + 20 * MS)  # fmt: skip
    trade = Trade(**common, event_key="t:9", ts_ms=1_767_225_600_001, recv_ns=T0 + 4 * MS, trade_id="9",
                  yes_price=Decimal("0.43"), no_price=Decimal("0.57"), count=Decimal("1"))  # unstamped  # fmt: skip
    snapshot = BookSnapshot(**common, event_key="s:1", ts_ms=1_767_225_600_000, recv_ns=T0)
    records = [
        (4, 100, 1_767_225_600_031, encode_event(delta)),
        (4, 101, 1_767_225_600_032, encode_event(snapshot)),  # not a venue event: no trip
        (1, 7, 1_767_225_600_040, encode_event(trade)),  # no trace entry covers it
        (4, 102, 1_767_225_600_033, b"\x00garbage"),
    ]
    commits = CommitIndex([TraceEntry(4, 90, 101, T0 + 50 * MS, T0 + 80 * MS), TraceEntry(4, 102, 110, 1, 2)])
    stats = TripStats()
    trips = trips_from_records(records, commits, stats)
    key = identity("delta", "KXM-1", {"side": "yes", "price": Decimal("0.43"), "delta": Decimal("5.00"),
                                      "ts_ms": 1_767_225_600_000})  # fmt: skip
    assert trips[key] == [Trip("d:1#1", T0 + 3 * MS, T0 + 9 * MS, T0 + 20 * MS, T0 + 31 * MS, T0 + 50 * MS,
                               T0 + 80 * MS)]  # fmt: skip
    assert trips[("trade", "9")] == [Trip("t:9", T0 + 4 * MS, 0, 0, T0 + 40 * MS, 0, 0)]
    assert (stats.records, stats.venue_events, stats.untraced, stats.unstamped, stats.undecodable) == (4, 2, 1, 1, 1)
    assert commits.lookup(4, 89) == (0, 0) and commits.lookup(4, 111) == (0, 0) and commits.lookup(9, 1) == (0, 0)
    assert commits.lookup(4, 90) == (T0 + 50 * MS, T0 + 80 * MS) and commits.lookup(4, 110) == (1, 2)


def test_format_hops_has_one_line_per_hop() -> None:
    table = {name: {"p50": 1.0, "p99": 2.0, "max": 3.0, "count": 4} for name in (*HOPS, TOTAL)}
    text = format_hops(table, [("venue->database", {})])
    assert len(text.splitlines()) == 1 + len(HOPS) + 2
    assert "raw->dedup read" in text and text.splitlines()[-1].split()[-1] == "0"


def test_each_kind_gets_its_own_table_over_the_first_window() -> None:
    """A lifecycle message held for its anchor sets the gatherer->raw max of the whole table; by kind, the deltas'
    table shows their own max."""
    lifecycle = ("lifecycle", "M", "deactivated", None, None, None, None, None, None, True, None)
    trips = {
        ("delta", "M", "yes", Decimal("0.5"), Decimal("1"), 1): [_trip("d#1", 10, 20)],
        ("delta", "M", "yes", Decimal("0.5"), Decimal("2"), 1): [_trip("d#2", 11, 25)],
        lifecycle: [
            Trip(
                "l#1", T0 + 12 * MS, T0 + 8_000 * MS, T0 + 8_001 * MS, T0 + 8_002 * MS, T0 + 8_003 * MS, T0 + 8_010 * MS
            )
        ],
    }
    join = HopJoin(trips, windows={"all": (T0, 2**63 - 1), "late": (T0 + 3 * MS, 2**63 - 1)})
    join.observe(("delta", "M", "yes", Decimal("0.5"), Decimal("1"), 1), T0 + 1 * MS)
    join.observe(("delta", "M", "yes", Decimal("0.5"), Decimal("2"), 1), T0 + 4 * MS)
    join.observe(lifecycle, T0 + 5 * MS)
    assert join.table()["gatherer->raw acked"]["max"] == 7_988.0
    by_kind = join.table_by_kind()
    assert list(by_kind) == ["delta", "lifecycle"]
    assert by_kind["delta"]["gatherer->raw acked"] == {"p50": 1.0, "p99": 1.0, "max": 1.0, "count": 2}
    assert by_kind["delta"][TOTAL] == {"p50": 19.0, "p99": 21.0, "max": 21.0, "count": 2}  # 20-1, 25-4
    assert by_kind["lifecycle"][TOTAL] == {"p50": 8_005.0, "p99": 8_005.0, "max": 8_005.0, "count": 1}
    text = format_kinds(by_kind).splitlines()
    assert len(text) == 3 and text[2].split()[:2] == ["lifecycle", "1"]
    assert text[2].endswith("gatherer->raw acked (7,988.0)") and text[1].endswith("sink read->committed (10.0)")


def test_an_event_outside_the_first_window_is_in_no_kind() -> None:
    ident = ("trade", "t-1")
    join = HopJoin({ident: [_trip("t", 5, 9)]}, windows={"all": (T0 + 10 * MS, 2**63 - 1), "early": (0, T0 + 10 * MS)})
    join.observe(ident, T0 + 1 * MS)
    assert join.table("early")[TOTAL]["count"] == 1 and join.table_by_kind() == {}
