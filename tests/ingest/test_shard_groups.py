"""ShardPlan.assign_groups: markets that must share a connection (e.g. the two tokens of one question) are placed
whole, never over the per-connection cap, and mix with single markets and releases."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ingest.shards import ShardPlan


def test_a_pair_never_straddles_two_connections() -> None:
    plan = ShardPlan(5)
    placed = plan.assign_groups([["a1", "a2"], ["b1", "b2"], ["c1", "c2"]])
    assert placed == {0: ["a1", "a2", "b1", "b2"], 1: ["c1", "c2"]}  # 5th slot of 0 is too small for c
    assert plan.sizes == [4, 2]


def test_freed_room_is_reused_by_a_group_that_fits() -> None:
    plan = ShardPlan(4)
    plan.assign_groups([["a1", "a2"], ["b1", "b2"], ["c1", "c2"]])
    plan.release(["a1", "a2"])
    assert plan.assign_groups([["d1", "d2"], ["b1", "b2"]]) == {0: ["d1", "d2"]}  # b is held already


@given(
    cap=st.integers(1, 6),
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("add"), st.lists(st.lists(st.integers(0, 40), min_size=1, max_size=4), max_size=6)),
            st.tuples(st.just("release"), st.lists(st.integers(0, 40), max_size=10)),
        ),
        max_size=12,
    ),
)
def test_groups_stay_whole_and_connections_within_the_cap(cap: int, ops: list) -> None:  # type: ignore[type-arg]
    plan = ShardPlan(cap)
    for op, arg in ops:
        if op == "add":
            groups = [[f"m{x}" for x in g] for g in arg]
            held_before = dict(plan.conn_of)
            plan.assign_groups(groups)
            earlier = set(held_before)
            for g in groups:
                new = [t for t in dict.fromkeys(g) if t not in earlier]  # an earlier group placed the rest
                earlier.update(g)
                if 0 < len(new) <= cap:
                    assert len({plan.conn_of[t] for t in new}) == 1, (g, plan.conn_of)
            for t in held_before:
                assert plan.conn_of[t] == held_before[t]  # held markets never move
        else:
            plan.release([f"m{x}" for x in arg])
        assert all(0 <= n <= cap for n in plan.sizes)
        assert [sum(1 for i in plan.conn_of.values() if i == c) for c in range(len(plan.sizes))] == plan.sizes
