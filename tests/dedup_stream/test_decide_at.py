"""The engines' hot path ``Deduper.decide_at``: the same state, counters and verdicts as ``decide``, and nothing
built for a later copy matched by one of its keys (the shared ``PLAIN_DUPLICATE``)."""

from __future__ import annotations

from dataclasses import asdict

from hypothesis import given, settings
from hypothesis import strategies as st

from dedup_stream.logic import PLAIN_DUPLICATE, Decision, Deduper, MemoryStore, Origin, TimeRange, Verdict
from schemas import GapReport, RawFrame, encode_gap, encode_raw
from venues import default_name

M = "KXDEMO-26JAN01-T50"
MS = 1_000_000
T0 = 1_767_225_600_000_000_000


def frame(gatherer: str, key: str, t_ms: int, alt: tuple[str, ...] = (), weak: str = "", sid: int = 1) -> bytes:
    return encode_raw(
        RawFrame(
            venue=default_name(),
            gatherer=gatherer,
            conn=0,
            sid=sid,
            seq=1,
            recv_ns=T0 + t_ms * MS,
            kind="lifecycle" if alt or weak else "delta",
            market=M,
            event_key=key,
            payload=b"{}",
            alt_keys=list(alt),
            weak_key=weak,
        )
    )


def gap(gatherer: str, t_ms: int, payload: bytes | None = None) -> bytes:
    """A gap frame of ``gatherer`` at ``t_ms``: a "down" report, or ``payload`` as it is."""
    report = GapReport(kind="down", conn=0, from_ns=T0, to_ns=T0 + t_ms * MS)
    return encode_raw(
        RawFrame(
            venue=default_name(),
            gatherer=gatherer,
            conn=0,
            sid=None,
            seq=None,
            recv_ns=T0 + t_ms * MS,
            kind="gap",
            market="",
            event_key=f"gap:{gatherer}:{t_ms}",
            payload=encode_gap(report) if payload is None else payload,
        )
    )


def test_a_plain_later_copy_returns_the_shared_duplicate_and_is_counted() -> None:
    d = Deduper(MemoryStore())
    won = d.decide_at(frame("g1", "d:1", 0), "raw.g1", 0, 0)
    assert won.verdict is Verdict.WON and won.frame is not None
    assert d.decide_at(frame("g2", "d:1", 3), "raw.g2", 0, 0) is PLAIN_DUPLICATE
    assert d.decide_at(frame("g3", "d:1", 5), "raw.g3", 0, 0) is PLAIN_DUPLICATE
    again = d.decide_at(frame("g1", "d:1", 0), "raw.g1", 0, 0)  # the winner's own origin, replayed
    assert again.verdict is Verdict.REEMIT and again.frame is not None
    stats = d.stats.gatherers
    assert (stats["g2"].duplicates, stats["g3"].duplicates, stats["g1"].reemitted) == (1, 1, 1)
    assert stats["g3"].copy_lag_s == 0.005 and d.stats.match_age_max_s == 0.005
    # decide keeps its full answer for a duplicate
    full = Deduper(MemoryStore())
    full.decide(frame("g1", "d:1", 0), Origin("raw.g1", 0, 0))
    late = full.decide(frame("g2", "d:1", 3), Origin("raw.g2", 0, 0))
    assert late is not PLAIN_DUPLICATE and late.verdict is Verdict.DUPLICATE
    assert late.winner is not None and late.winner.gatherer == "g1"


def test_a_weak_match_still_returns_its_own_decision() -> None:
    d = Deduper(MemoryStore())
    assert d.decide_at(frame("g1", "A", 0, weak="w"), "raw.g1", 0, 0).verdict is Verdict.WON
    joined = d.decide_at(frame("g2", "B", 10, weak="w"), "raw.g2", 0, 0)  # no key seen: joins by weak key
    # a lifecycle copy that joins brings its keys to the row (an alias record): never the shared constant
    assert joined is not PLAIN_DUPLICATE and joined.verdict is Verdict.ALIAS and joined.weak
    assert d.decide_at(frame("g3", "A", 12, alt=("C",)), "raw.g3", 0, 0).verdict is Verdict.ALIAS  # C is new
    assert d.decide_at(frame("g2", "C", 14, alt=("A",)), "raw.g2", 0, 1) is PLAIN_DUPLICATE  # every key known


_gatherers = st.sampled_from(["g1", "g2", "g3"])
_steps = st.lists(
    st.one_of(
        st.tuples(st.just("frame"), _gatherers, st.integers(0, 6), st.integers(0, 3_000), st.integers(0, 3)),
        st.tuples(st.just("replay"), st.integers(0, 200)),
        st.tuples(st.just("gap"), _gatherers, st.integers(0, 3_000)),
        st.tuples(st.just("junk")),
    ),
    max_size=60,
)


def _summary(decision: Decision) -> tuple[object, ...]:
    frame = decision.frame
    return (decision.verdict, frame.event_key if frame else None, decision.weak, decision.error)


@settings(max_examples=300, deadline=None)
@given(steps=_steps, ranged=st.booleans())
def test_decide_at_keeps_state_counters_and_emitting_decisions_of_decide(
    steps: list[tuple[object, ...]], ranged: bool
) -> None:
    time_range = TimeRange(from_ns=T0 + 500 * MS, to_ns=T0 + 2_500 * MS, warmup_ns=300 * MS) if ranged else TimeRange()
    stores = MemoryStore(), MemoryStore()
    full, fast = (Deduper(store, time_range=time_range, singles_horizon_ns=1_000 * MS) for store in stores)
    offsets: dict[str, int] = {}
    fed: list[tuple[bytes, str, int]] = []
    for step in steps:
        if step[0] == "frame":
            _, gatherer, key, t_ms, shape = step
            alt = (f"k{(int(key) + 1) % 7}",) if shape == 1 else ()
            weak = f"w{int(key) % 2}" if shape == 2 else ""
            value = frame(str(gatherer), f"k{key}", int(t_ms), alt, weak)
        elif step[0] == "gap":
            value = gap(str(step[1]), int(step[2]))
        elif step[0] == "junk":
            value = b"\x01not a frame"
        else:
            if not fed:
                continue
            value, topic, offset = fed[int(step[1]) % len(fed)]  # a replay of a frame read before
            _compare(full, fast, value, topic, offset)
            continue
        topic = f"raw.{step[1] if step[0] != 'junk' else 'g1'}"
        offset = offsets.get(topic, 0)
        offsets[topic] = offset + 1
        fed.append((value, topic, offset))
        _compare(full, fast, value, topic, offset)
    full.tick(T0 + 4_000 * MS)
    fast.tick(T0 + 4_000 * MS)
    assert asdict(fast.stats) == asdict(full.stats)
    assert stores[1].data == stores[0].data
    assert fast.singles.pending == full.singles.pending


def _compare(full: Deduper, fast: Deduper, value: bytes, topic: str, offset: int) -> None:
    expected = full.decide(value, Origin(topic, 0, offset))
    got = fast.decide_at(value, topic, 0, offset)
    if expected.verdict is Verdict.DUPLICATE and not expected.weak:
        assert got is PLAIN_DUPLICATE
    else:
        assert got is not PLAIN_DUPLICATE and _summary(got) == _summary(expected)


def test_a_frame_with_a_str_that_is_not_utf8_is_invalid_not_an_exception() -> None:
    """msgspec raises UnicodeDecodeError for it (not DecodeError): the worker stopped on such a record and, restarted,
    read it again. It is dead-lettered and counted like any frame that does not decode."""
    bad = frame("g2", "d:1", 3).replace(M.encode(), M.encode()[:-1] + b"\xed", 1)
    d = Deduper(MemoryStore())
    d.decide_at(frame("g1", "d:1", 0), "raw.g1", 0, 0)
    decision = d.decide_at(bad, "raw.g2", 0, 1)
    assert decision.verdict is Verdict.INVALID and "utf-8" in (decision.error or "")
    assert d.stats.invalid == 1
    assert Deduper(MemoryStore()).decide(bad, Origin("raw.g2", 0, 1)).verdict is Verdict.INVALID


def test_a_gap_report_whose_payload_is_not_utf8_is_invalid_not_an_exception() -> None:
    """The report is JSON: msgspec's json decoder raises UnicodeDecodeError for a string that is not UTF-8 too."""
    bad = gap("g1", 0, b'{"kind":"down\xed","conn":0,"from_ns":1,"to_ns":2}')
    d = Deduper(MemoryStore())
    decision = d.decide_at(bad, "raw.g1", 0, 0)
    assert decision.verdict is Verdict.INVALID and "gap report" in (decision.error or "")
    assert d.stats.invalid == 1


def test_frames_nested_too_deep_are_invalid_not_an_exception() -> None:
    """msgspec raises RecursionError for nesting past its limit, in an extra trailing element of a frame's array (the
    msgpack decoder skips it recursively) or an unknown field of a gap report's JSON."""
    import msgspec

    fields = msgspec.msgpack.decode(frame("g2", "d:1", 3))
    deep_frame = msgspec.msgpack.encode([*fields, None])[:-1] + b"\x91" * 2000 + b"\xc0"
    report = b'{"kind":"down","conn":0,"from_ns":1,"to_ns":2,"zz":' + b"[" * 2000 + b"]" * 2000 + b"}"
    deep_gap = gap("g1", 0, report)
    d = Deduper(MemoryStore())
    assert d.decide_at(deep_frame, "raw.g2", 0, 1).verdict is Verdict.INVALID
    assert d.decide_at(deep_gap, "raw.g1", 0, 2).verdict is Verdict.INVALID
    assert d.stats.invalid == 2


def test_a_gap_report_with_an_int_beyond_64_bits_is_invalid() -> None:
    """JSON ints have no bound: a count of 400 digits added to the missed-message counter made every later scrape of
    the worker's metrics fail (prometheus_client converts it to a float)."""
    report = b'{"kind":"seq","conn":0,"from_ns":1,"to_ns":2,"sid":1,"expected":1,"received":1' + b"0" * 400 + b"}"
    bad = gap("g1", 0, report)
    d = Deduper(MemoryStore())
    assert d.decide_at(bad, "raw.g1", 0, 0).verdict is Verdict.INVALID
    assert d.stats.gatherer("g1").gap_missing == 0
