"""Copies a venue session keyed and held back, released across a gatherer's connections in the order they came due.

Role in the pipeline: a venue session may key a message and hold it back for a while (a venue's lifecycle copies
waiting for the anchors after them, in its own package). A gatherer subscribes such a stream on two connections, and
the order in which its two copies of one message reach the raw topic matters to the dedup stage (a copy that lost an
anchor must come after one that did not). The watchdog ticks connections one after the other a few times a second,
so two copies due within one tick would leave in connection order; :func:`release_in_due_order` releases them oldest
due first.
Pure logic over the sessions' ``held_due_ns`` / ``release_held`` (sessions without them hold nothing back).
"""

from __future__ import annotations

from typing import Any

__all__ = ["release_in_due_order"]


def release_in_due_order(sessions: list[Any], now_ns: int) -> int:
    """Release every copy due by ``now_ns``, across ``sessions``, earliest due first; returns the releases made."""
    holding = [s for s in sessions if hasattr(s, "held_due_ns")]
    releases = 0
    while True:
        first: tuple[int, Any] | None = None
        for session in holding:
            due = session.held_due_ns()
            if due is not None and due <= now_ns and (first is None or due < first[0]):
                first = (due, session)
        if first is None:
            return releases
        first[1].release_held(first[0])
        releases += 1
