"""AnchorChain: messages without venue time keyed by their position relative to anchors (unit tests)."""

from __future__ import annotations

import pytest

from venues.kalshi.anchors import (
    LOOSE_DELAY_NS,
    MAX_WAIT_NS,
    NEXT,
    PREV,
    TRAIL_ANCHORS,
    TRAIL_NS,
    AnchorChain,
    LcKey,
    anchor_key,
    is_anchor,
)

S = 1_000_000_000


def run(chain: AnchorChain[int], stream: list[tuple[int, str, bool]], now: int = 0) -> dict[int, str]:
    """Push (pos, content, anchor) messages; returns pos -> event key for everything keyed (flushing at the end)."""
    return {item: key.key for item, key in run_keys(chain, stream, now).items()}


def run_keys(chain: AnchorChain[int], stream: list[tuple[int, str, bool]], now: int = 0) -> dict[int, LcKey]:
    out: dict[int, LcKey] = {}
    for pos, content, anchor in stream:
        for item, key in chain.push(pos, content, pos, anchor, now):
            out[item] = key
    for item, key in chain.close() + chain.release_keyed():  # then the copies held for their trail
        out[item] = key
    return out


def test_anchor_kinds() -> None:
    assert is_anchor("market_lifecycle_v2", "created") and is_anchor("market_lifecycle_v2", "settled")
    assert is_anchor("event_lifecycle", "")
    assert not is_anchor("market_lifecycle_v2", "deactivated") and not is_anchor("market_lifecycle_v2", "")
    assert not is_anchor("event_fee_update", "") and not is_anchor("market_lifecycle_v2", "some_new_type")


def test_identical_bodies_get_distinct_keys_and_late_subscribers_agree() -> None:
    # D and A alternate for one market (a pause/resume cycle), anchors X and Y elsewhere on the stream
    stream = [(1, "D", False), (2, "A", False), (3, "X", True), (4, "D", False), (5, "A", False), (6, "Y", True)]
    early = run(AnchorChain(), stream)
    late = run(AnchorChain(), stream[3:])  # subscribed after the first cycle and the anchor X
    assert len(set(early.values())) == 6
    assert early[3] == anchor_key("X") and early[6] == anchor_key("Y")
    assert {p: early[p] for p in (4, 5, 6)} == late


def test_a_copy_carries_its_keys_against_the_anchors_before_it_too() -> None:
    stream = [(1, "X", True), (2, "D", False), (3, "Y", True), (4, "D", False), (5, "Z", True)]
    full = run_keys(AnchorChain(), stream)
    assert full[4].key == run(AnchorChain(), stream)[4] and full[4].refs == ("Z", NEXT, "Y", "X", PREV)
    stalled = run_keys(AnchorChain(), stream[:4])  # no Z: keyed backward (against Y, then X)
    assert stalled[4].key == full[4].alt[0] and stalled[4].alt == full[4].alt[1:]
    lost_y = run_keys(AnchorChain(), [stream[0], stream[1], stream[3], stream[4]])  # a gap swallowed Y
    assert lost_y[4].key == full[4].key and set(lost_y[4].alt) < set(full[4].alt)  # they meet on Z and on X
    assert PREV not in lost_y[4].refs and NEXT in lost_y[4].refs
    lost_z = run_keys(AnchorChain(), [*stream[:4], (6, "W", True)])  # a gap swallowed Z
    assert lost_z[4].key != full[4].key and lost_z[4].alt[0] == full[4].alt[0]  # they meet on Y
    assert NEXT not in lost_z[4].refs and PREV in lost_z[4].refs
    assert all(k.weak for p, k in full.items() if p in (2, 4)) and not full[3].weak


def test_a_copy_with_no_anchor_before_it_is_loose_and_counted() -> None:
    chain: AnchorChain[int] = AnchorChain(unanchored_tag="g3:0:1")
    keys = run_keys(chain, [(1, "D", False), (2, "X", True), (3, "D", False)])
    assert keys[1].alt == () and keys[1].refs == ("X", NEXT)  # the forward key alone
    assert keys[3].refs == ("X", PREV)  # stalled: backward against X
    assert chain.loose == 1 and chain.unanchored == 0


def test_gaps_do_not_shift_positions() -> None:
    stream = [(1, "D", False), (2, "A", False), (3, "D", False), (4, "X", True)]
    full = run(AnchorChain(), stream)
    lossy = run(AnchorChain(), [stream[0], stream[3]])  # positions 2 and 3 lost: seq still says where 1 is
    assert lossy[1] == full[1]


def test_no_anchor_within_span_keys_backward_alike_on_every_gatherer() -> None:
    stream = [(1, "X", True), (2, "D", False), *[(p, f"m{p}", False) for p in range(3, 10)], (10, "Y", True)]
    a = run(AnchorChain(max_span=4), stream)
    b = run(AnchorChain(max_span=4), [s for s in stream if s[0] not in (5, 6)])  # lost two in between
    assert a[2] == b[2]
    assert a[2] != run(AnchorChain(max_span=100), stream)[2]  # (forward when the anchor is within the span)


def test_a_stalled_stream_keys_waiting_messages_backward_after_hold() -> None:
    chain: AnchorChain[int] = AnchorChain(hold_ns=5 * S, max_wait_ns=0)  # no cap on the wait: the stall alone
    assert [k.key for _, k in chain.push(1, "X", 1, True, 0)] == [anchor_key("X")]
    assert chain.push(2, "D", 2, False, 1 * S) == []
    assert chain.expire(5 * S) == []  # 4 s of silence: still waiting
    keyed = chain.expire(6 * S)
    assert [i for i, _ in keyed] == [2] and chain.backward == 1


def test_a_message_after_an_anchor_waits_at_most_max_wait_while_the_stream_flows() -> None:
    # the stream never stalls (a message every 0.3 s) and the next anchor comes 5 s later: without a cap each message
    # waited for it (the demo's multi-second lifecycle tail); with it each one is keyed backward MAX_WAIT_NS after
    # its receipt, with the keys a copy that waited for the anchor carries as well (so the two meet in dedup)
    assert MAX_WAIT_NS <= S // 2
    chain: AnchorChain[int] = AnchorChain(hold_ns=5 * S, max_wait_ns=MAX_WAIT_NS)
    chain.push(1, "X", 1, True, 0)
    released: dict[int, tuple[int, LcKey]] = {}
    t = 0
    for pos in range(2, 18):
        t = (pos - 1) * 300_000_000
        for item, key in [*chain.expire(t), *chain.push(pos, f"D{pos}", pos, False, t)]:
            released[item] = (t, key)
    for item, key in chain.push(18, "Y", 18, True, t + 300_000_000):
        released.setdefault(item, (t + 300_000_000, key))
    for pos in range(2, 16):  # the last two were still within their wait when Y came
        assert released[pos][0] - (pos - 1) * 300_000_000 <= MAX_WAIT_NS + 300_000_000, pos
    waited = run_keys(
        AnchorChain(max_wait_ns=0), [(1, "X", True), *[(p, f"D{p}", False) for p in range(2, 18)], (18, "Y", True)]
    )
    for pos in range(2, 16):
        key = released[pos][1]
        assert key.key in waited[pos].alt and set(key.alt) <= set(waited[pos].alt), pos
    assert chain.backward == 14 and chain.forward == 2


def test_a_loose_message_keeps_waiting_for_its_forward_key() -> None:
    chain: AnchorChain[int] = AnchorChain(hold_ns=5 * S, max_wait_ns=MAX_WAIT_NS)  # subscribed after the last anchor
    chain.push(1, "D", 1, False, 0)
    assert chain.expire(S) == [] and chain.due_ns() == 5 * S  # only a stall or the next anchor keys it
    keyed = chain.push(2, "Y", 2, True, 2 * S)
    # with the cap on, the loose copy goes LOOSE_DELAY_NS after its anchor (after the others' supplements)
    assert [i for i, _ in keyed] == [2] and chain.unanchored == 0 and chain.waiting == 1
    assert chain.due_ns() == 2 * S + LOOSE_DELAY_NS and chain.expire(2 * S + LOOSE_DELAY_NS - 1) == []
    late = chain.expire(2 * S + LOOSE_DELAY_NS)
    assert [i for i, _ in late] == [1] and late[0][1].refs == ("Y", NEXT) and chain.waiting == 0


def test_a_message_released_at_the_cap_is_keyed_again_with_its_forward_key_at_the_next_anchor() -> None:
    # the supplement carries every key the message would have had if it had waited (what a loose copy meets it by)
    chain: AnchorChain[int] = AnchorChain(hold_ns=5 * S, max_wait_ns=MAX_WAIT_NS)
    chain.push(1, "X", 1, True, 0)
    chain.push(2, "D", 2, False, S)
    capped = chain.expire(S + MAX_WAIT_NS)
    assert [i for i, _ in capped] == [2] and NEXT not in capped[0][1].refs
    keyed = chain.push(3, "Y", 3, True, 3 * S)
    waited = run_keys(AnchorChain(max_wait_ns=0), [(1, "X", True), (2, "D", False), (3, "Y", True)])
    assert [i for i, _ in keyed] == [2, 3] and keyed[0][1] == waited[2] and chain.supplements == 1
    assert chain.forward == 0 and chain.backward == 1  # the supplement is counted apart
    assert [i for i, _ in chain.push(4, "Z", 4, True, 4 * S)] == [4]  # once


def test_without_any_anchor_the_fallback_key_is_this_copys_own() -> None:
    a: AnchorChain[int] = AnchorChain(unanchored_tag="g1:0:5")
    b: AnchorChain[int] = AnchorChain(unanchored_tag="g2:0:3")
    ka = run(a, [(1, "D", False)])
    kb = run(b, [(1, "D", False)])
    assert ka[1] != kb[1] and a.unanchored == b.unanchored == 1


def test_positions_must_increase() -> None:
    chain: AnchorChain[int] = AnchorChain()
    chain.push(1, "D", 3, False, 0)
    with pytest.raises(ValueError):
        chain.push(2, "D", 3, False, 0)


def test_a_copy_keyed_forward_gathers_keys_against_the_anchors_of_its_trail() -> None:
    # D at 0, its forward anchor X at 0.1 s, Y at 1.0 s (within TRAIL_NS of D), Z after it: D goes out TRAIL_NS after
    # itself (its trail complete) with its forward key first, then its key against Y (the forward key of a copy that
    # lost X: they meet by key)
    assert TRAIL_NS > S  # the dedup stage's weak window (1 s) and the receive spread
    chain: AnchorChain[int] = AnchorChain(hold_ns=5 * S)
    assert chain.push(1, "D", 1, False, 0) == []
    assert [i for i, _ in chain.push(2, "X", 2, True, S // 10)] == [2] and chain.waiting == 1
    assert [i for i, _ in chain.push(3, "Y", 3, True, S)] == [3]
    due = TRAIL_NS
    assert chain.due_ns() == chain.held_due_ns() == due and chain.expire(due - 1) == []
    (item, key), *rest = chain.expire(due)
    assert item == 1 and not rest and chain.waiting == 0
    waited = run_keys(AnchorChain(trail_ns=0), [(1, "D", False), (2, "X", True)])[1]
    lost_x = run_keys(AnchorChain(trail_ns=0), [(1, "D", False), (3, "Y", True)])[1]
    assert key.key == waited.key and key.alt == (lost_x.key,) and key.refs == ("X", NEXT, "Y")
    assert [i for i, _ in chain.push(4, "Z", 4, True, 2 * S)] == [4]  # past the trail: nothing more for D


def test_a_trail_takes_at_most_trail_anchors_and_only_within_trail_ns() -> None:
    chain: AnchorChain[int] = AnchorChain(hold_ns=5 * S)
    chain.push(1, "D", 1, False, 0)
    for pos in range(2, TRAIL_ANCHORS + 4):  # the forward anchor, then TRAIL_ANCHORS + 1 more, 10 ms apart
        chain.push(pos, f"A{pos}", pos, True, pos * 10_000_000)
    ((_, key),) = chain.expire(20_000_000 + TRAIL_NS)
    assert key.refs == ("A2", NEXT, *(f"A{p}" for p in range(3, TRAIL_ANCHORS + 3))) and len(key.alt) == TRAIL_ANCHORS
    late: AnchorChain[int] = AnchorChain(hold_ns=5 * S)
    late.push(1, "D", 1, False, 0)
    late.push(2, "X", 2, True, S)
    late.push(3, "Y", 3, True, TRAIL_NS + 1)  # just past D's trail: no key against Y, though D is still held
    ((_, key),) = late.expire(S + TRAIL_NS)
    assert key.refs == ("X", NEXT) and key.alt == ()


def test_a_gatherers_copies_of_one_message_leave_in_the_order_their_forward_anchors_came() -> None:
    # its two subscriptions: one received X, the other lost it (keyed forward against Y, no NEXT); the one that lost
    # it goes after the other, as when each went at its anchor (a cold review's case: both went TRAIL_NS after D,
    # and the copy without NEXT, read first in a replay, joined an equal body's entry)
    clean: AnchorChain[int] = AnchorChain(hold_ns=5 * S)
    lossy: AnchorChain[int] = AnchorChain(hold_ns=5 * S)
    for chain in (clean, lossy):
        chain.push(1, "D", 1, False, 0)
    clean.push(2, "X", 2, True, 20_000_000)
    for chain in (clean, lossy):
        chain.push(3, "Y", 3, True, 40_000_000)
    assert (clean.held_due_ns() or 0) < (lossy.held_due_ns() or 0)
    assert [k.refs for _, k in clean.release_due(10 * S) + lossy.release_due(10 * S)] == [("X", NEXT, "Y"), ("Y",)]


def test_with_the_cap_on_there_is_no_trail() -> None:
    chain: AnchorChain[int] = AnchorChain(hold_ns=5 * S, max_wait_ns=MAX_WAIT_NS)
    chain.push(1, "X", 1, True, 0)
    chain.push(2, "D", 2, False, S // 10)
    assert [i for i, _ in chain.push(3, "Y", 3, True, S // 5)] == [2, 3] and chain.trail_ns == 0


def test_a_forward_anchor_later_than_the_trail_releases_the_copy_at_once() -> None:
    # no anchor can join its trail any more: held, it would only die with a gatherer killed meanwhile (a message only
    # that gatherer received is then lost: the e2e's lost `metadata_updated`, CI of 0123aa3)
    chain: AnchorChain[int] = AnchorChain(hold_ns=5 * S)
    chain.push(1, "D", 1, False, 0)
    ((first, key), anchor) = chain.push(2, "X", 2, True, 2 * S)
    assert (first, anchor[0]) == (1, 2) and key.refs == ("X", NEXT) and key.alt == () and chain.waiting == 0


def test_a_copy_that_may_have_lost_an_anchor_is_held_trail_ns_after_its_own() -> None:
    # no NEXT (a position lost between it and its forward anchor): held TRAIL_NS after that anchor, so that it leaves
    # after its gatherer's copy on the other subscription that received the earlier anchor (due by then at the
    # latest); a copy after it in the stream never leaves before it
    chain: AnchorChain[int] = AnchorChain(hold_ns=5 * S)
    chain.push(1, "D", 1, False, 0)
    chain.push(2, "E", 3, False, S)  # position 2 lost
    assert [i for i, _ in chain.push(3, "Y", 4, True, 3 * S)] == [3] and chain.held_due_ns() == 3 * S + TRAIL_NS
    assert chain.release_due(3 * S + TRAIL_NS - 1) == []
    out = chain.release_due(3 * S + TRAIL_NS)
    assert [i for i, _ in out] == [1, 2] and NEXT not in out[0][1].refs and NEXT in out[1][1].refs


def test_a_subscription_that_ends_releases_its_trailing_copies_as_keyed() -> None:
    chain: AnchorChain[int] = AnchorChain(hold_ns=5 * S)
    chain.push(1, "D", 1, False, 0)
    chain.push(2, "X", 2, True, S // 10)
    chain.push(3, "E", 3, False, S // 5)
    keyed = chain.release_keyed()
    assert [i for i, _ in keyed] == [1] and keyed[0][1].refs == ("X", NEXT) and chain.waiting == 1
    assert [i for i, _ in chain.close()] == [3]  # E: keyed backward against X


def test_a_copy_keyed_at_an_anchor_waits_for_an_overdue_one_ahead_of_it() -> None:
    # D's trail ended at 1.5 s but the watchdog has not released it yet when Y keys E (due at once): E waits behind D
    # (a cold review's case against the first version of the trail's end, which sent E at Y, ahead of D)
    chain: AnchorChain[int] = AnchorChain(hold_ns=5 * S)
    chain.push(1, "D", 1, False, 0)
    chain.push(2, "X", 2, True, S // 10)
    chain.push(3, "E", 3, False, S // 5)
    assert [i for i, _ in chain.push(4, "Y", 4, True, 1_720_000_000)] == [4]
    assert [i for i, _ in chain.release_due(1_720_000_000)] == [1, 3]


def test_with_the_cap_on_a_copy_keyed_at_an_anchor_does_not_wait_for_a_loose_one() -> None:
    # the loose copy d waits LOOSE_DELAY_NS after A1 (after the others' supplements); e, keyed at A2, goes at once
    chain: AnchorChain[int] = AnchorChain(hold_ns=5 * S, max_wait_ns=MAX_WAIT_NS)
    chain.push(1, "d", 1, False, 0)
    assert [i for i, _ in chain.push(2, "A1", 2, True, S // 10)] == [2]
    chain.push(3, "e", 3, False, S // 5)
    assert [i for i, _ in chain.push(4, "A2", 4, True, 3 * S // 10)] == [3, 4]
    assert [i for i, _ in chain.release_due(S // 10 + LOOSE_DELAY_NS)] == [1]
