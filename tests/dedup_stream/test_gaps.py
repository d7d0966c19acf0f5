"""Gap reports -> coverage records: both payload forms, malformed payloads, keys that absorb replays only."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dedup_stream.gaps import gap_event, gap_key, parse_gap
from schemas import GapReport, RawFrame, SchemaError, decode_event, decode_raw, encode_event, encode_gap, encode_raw
from schemas.events import Gap
from venues import default_name

VENUE = default_name()  # the venue whose name the records carry (any known venue)

T0 = 1_767_225_600_000_000_000


def gap_frame(payload: bytes, gatherer: str = "g2", market: str = "KXA", recv_ns: int = T0, conn: int = 3) -> RawFrame:
    return RawFrame(
        venue=VENUE, gatherer=gatherer, conn=conn, sid=7, seq=12, recv_ns=recv_ns, kind="gap", market=market,
        event_key="g:whatever", payload=payload,
    )  # fmt: skip


def test_report_becomes_a_coverage_record() -> None:
    report = GapReport(
        kind="down", conn=4, from_ns=T0 + 1_500_000, to_ns=T0 + 9_000_000_000, channel="orderbook_delta",
        markets=["KXB", "KXC"], sid=None,
    )  # fmt: skip
    frame = gap_frame(encode_gap(report), recv_ns=T0 + 9_100_000_000)
    event = gap_event(frame, parse_gap(frame))
    assert isinstance(event, Gap)
    assert (event.venue, event.gatherer, event.market, event.kind, event.conn) == (VENUE, "g2", "KXB", "down", 4)
    assert (event.ts_ms, event.recv_ns) == ((T0 + 1_500_000) // 1_000_000, T0 + 9_100_000_000)
    assert (event.from_ns, event.to_ns, event.channel, event.markets) == (
        T0 + 1_500_000, T0 + 9_000_000_000, "orderbook_delta", ["KXB", "KXC"],
    )  # fmt: skip
    assert event.sid is None and event.missed is None
    assert event.event_key.startswith(f"g:g2:4:down::{T0 + 1_500_000}:")
    assert decode_event(encode_event(event)) == event  # what the sink reads


def test_all_markets_and_empty_markets_give_market_star() -> None:
    for markets in (["*"], []):
        report = GapReport(kind="resubscribe", conn=1, from_ns=T0, to_ns=T0, markets=markets, sid=9)
        frame = gap_frame(encode_gap(report))
        assert gap_event(frame, parse_gap(frame)).market == "*"


def test_seq_skip_reports_the_missed_count() -> None:
    report = GapReport(kind="seq", conn=1, from_ns=T0, to_ns=T0 + 5, markets=["KXA"], sid=2, expected=10, received=14)
    frame = gap_frame(encode_gap(report))
    assert gap_event(frame, parse_gap(frame)).missed == 4


def test_older_payload_is_a_seq_window_of_the_frames_market_at_its_receive_time() -> None:
    frame = gap_frame(b'{"sid": 5, "expected": 10, "received": 13, "conn": 8}', market="KXZ", recv_ns=T0 + 123)
    report = parse_gap(frame)
    assert report == GapReport(
        kind="seq", conn=8, from_ns=T0 + 123, to_ns=T0 + 123, channel="", markets=["KXZ"], sid=5, expected=10,
        received=13,
    )  # fmt: skip
    event = gap_event(frame, report)
    assert (event.market, event.kind, event.missed, event.ts_ms) == ("KXZ", "seq", 3, (T0 + 123) // 1_000_000)
    # without conn and sid (the oldest form): the frame's own
    bare = parse_gap(gap_frame(b'{"expected": 1, "received": 2}', conn=6))
    assert (bare.conn, bare.sid) == (6, 7)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"[]",
        b"{}",
        b'{"kind": "down", "conn": 1, "from_ns": 5}',  # no to_ns
        b'{"kind": "down", "conn": 1, "from_ns": 9, "to_ns": 5}',  # ends before it starts
        b'{"kind": "", "conn": 1, "from_ns": 1, "to_ns": 5}',
        b'{"kind": "down", "conn": "x", "from_ns": 1, "to_ns": 5}',
        b'{"kind": "down", "conn": 1, "from_ns": -1, "to_ns": 5}',
        b'{"sid": 1, "expected": 2}',  # older form without received
        b'{"sid": 1, "expected": 2, "received": 5, "channel": "x"}',  # neither form
        b'{"kind": "down", "conn": 1, "from_ns": 1, "to_ns": 5, "markets": "KXA"}',
    ],
)
def test_malformed_payloads_raise_schema_errors(payload: bytes) -> None:
    with pytest.raises(SchemaError, match="gap report"):
        parse_gap(gap_frame(payload))


reports = st.builds(
    GapReport,
    kind=st.sampled_from(["seq", "first_seq", "down", "resubscribe", "rejected"]),
    conn=st.integers(0, 3),
    from_ns=st.integers(T0, T0 + 3),
    to_ns=st.integers(T0 + 3, T0 + 5),
    channel=st.sampled_from(["", "orderbook_delta", "trade"]),
    markets=st.lists(st.sampled_from(["*", "KXA", "KXB"]), max_size=2),
    sid=st.none() | st.integers(1, 2),
    expected=st.none() | st.integers(1, 2),
    received=st.none() | st.integers(3, 4),
)


@given(a=reports, b=reports, ga=st.sampled_from(["g1", "g2"]), gb=st.sampled_from(["g1", "g2"]))
def test_keys_are_equal_exactly_for_equal_reports_of_one_gatherer(a: GapReport, b: GapReport, ga: str, gb: str) -> None:
    assert (gap_key(ga, a) == gap_key(gb, b)) == (ga == gb and a == b)


@given(report=reports)
def test_a_replayed_frame_gives_the_same_record(report: GapReport) -> None:
    frame = gap_frame(encode_gap(report))
    replayed = decode_raw(encode_raw(frame))  # read again from the raw topic (or re-sent by a spool)
    assert gap_event(replayed, parse_gap(replayed)) == gap_event(frame, parse_gap(frame))
