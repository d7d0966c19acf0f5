"""ingest.held_order: copies held back by a gatherer's sessions leave in the order they came due, across sessions."""

from __future__ import annotations

from ingest.held_order import release_in_due_order


class Holding:
    """A session stand-in holding copies (name, due time)."""

    def __init__(self, out: list[str], held: list[tuple[str, int]]) -> None:
        self.out = out
        self.held = sorted(held, key=lambda x: x[1])

    def held_due_ns(self) -> int | None:
        return self.held[0][1] if self.held else None

    def release_held(self, upto_ns: int) -> None:
        self.out += [name for name, due in self.held if due <= upto_ns]
        self.held = [(name, due) for name, due in self.held if due > upto_ns]


class Plain:
    """A session that holds nothing back (no held_due_ns)."""


def test_copies_due_within_one_tick_leave_in_due_order_across_sessions() -> None:
    out: list[str] = []
    a = Holding(out, [("a-lost-X", 1_560), ("a-later", 9_000)])
    b = Holding(out, [("b-clean", 1_540), ("b-next", 1_600)])
    assert release_in_due_order([a, Plain(), b], 2_000) == 3
    assert out == ["b-clean", "a-lost-X", "b-next"]  # connection order would have sent a's copy first
    assert a.held == [("a-later", 9_000)] and release_in_due_order([a, b], 2_000) == 0
