"""received_by: which waiting copies of an ended lifecycle subscription the gatherer's other subscription certainly
received (only those may be dropped; a copy dropped wrongly is a loss that no gatherer reports)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from venues.kalshi.anchors import AnchorChain, received_by


def _seen(chain_input: list[tuple[int, str, bool]], max_span: int = 1000) -> list[tuple[int, str, bool]]:
    chain: AnchorChain[int] = AnchorChain(max_span=max_span)
    for pos, content, anchor in chain_input:
        chain.push(pos, content, pos, anchor, 0)
    return list(chain.recent)


def test_positions_line_up_on_a_common_anchor_and_a_lost_position_is_not_received() -> None:
    mine = _seen([(1, "E", True), (2, "d", False), (3, "a", False), (4, "m", False)])
    theirs = _seen([(4, "E", True), (5, "d", False), (7, "m", False)])  # lost its 6 (the "a")
    assert received_by(mine, theirs, [2, 3, 4]) == {2, 4}


def test_an_equal_body_without_a_common_anchor_proves_nothing() -> None:
    # the other subscription started after "d" at 1 and got an equal body later: no anchor lines the two up
    mine = _seen([(1, "d", False), (2, "x", False)])
    theirs = _seen([(1, "x", False), (2, "d", False)])
    assert received_by(mine, theirs, [1, 2]) == set()


def test_anchors_that_disagree_prove_nothing() -> None:
    mine = _seen([(1, "E", True), (2, "F", True), (3, "d", False)])
    theirs = _seen([(1, "E", True), (3, "F", True), (4, "d", False)])  # not one stream: no single offset
    assert received_by(mine, theirs, [3]) == set()


def test_an_anchor_seen_twice_in_a_window_proves_nothing() -> None:
    # a venue that repeated an anchor's body: which of the two lines the positions up is unknown
    mine = _seen([(1, "E", True), (2, "d", False)])
    theirs = _seen([(1, "E", True), (2, "x", False), (3, "E", True), (4, "d", False)])
    assert received_by(mine, theirs, [2]) == set()


@st.composite
def _two_subscriptions(draw: st.DrawFn) -> tuple[list[tuple[str, bool]], tuple[int, int, set[int]], ...]:
    n = draw(st.integers(5, 60))
    anchors = iter(range(10**6))
    stream = [
        (f"A{next(anchors)}", True) if draw(st.integers(0, 3)) == 0 else (draw(st.sampled_from("abc")), False)
        for _ in range(n)
    ]

    def sub() -> tuple[int, int, set[int]]:
        start = draw(st.integers(0, n - 1))
        end = draw(st.integers(start + 1, n))  # ended there (behind the other) or still live
        lost = draw(st.sets(st.integers(start, n - 1), max_size=n // 3))
        return start, end, lost

    return stream, sub(), sub(), draw(st.integers(2, 40))


@settings(max_examples=400, deadline=None)
@given(_two_subscriptions())
def test_a_position_said_received_was_received(case: tuple) -> None:
    # one venue stream (equal bodies recur, anchors are unique); each subscription numbers it from 1 where it started,
    # counting lost messages too, and remembers its last 2 * max_span + 2 messages
    stream, (start_a, end_a, lost_a), (start_b, end_b, lost_b), max_span = case

    def received(start: int, end: int, lost: set[int]) -> list[tuple[int, str, bool]]:
        return [(i - start + 1, *stream[i]) for i in range(start, end) if i not in lost]

    mine = _seen(received(start_a, end_a, lost_a), max_span)
    theirs = _seen(received(start_b, end_b, lost_b), max_span)
    for pos in received_by(mine, theirs, [p for p, _, _ in mine]):
        index = pos + start_a - 1
        assert start_b <= index < end_b and index not in lost_b
