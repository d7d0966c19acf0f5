"""Identity of messages that carry no venue time: their position in one venue stream, relative to an anchor.

The lifecycle channel (``market_lifecycle_v2``, with ``event_lifecycle`` and ``event_fee_update``) cannot be filtered:
every subscriber receives the same venue-wide stream, and the venue numbers it per subscription (``seq`` +1 per
message, including the messages a subscriber then loses). Most of its bodies carry no time (activated, deactivated,
metadata, fee updates), so the same body recurs — a market paused and resumed twice sends two identical
``deactivated`` bodies, seconds or hours apart — and neither the body nor a receive clock can tell the two apart
the same way on every gatherer.

What every subscriber shares is the ORDER of that stream. Some messages are unique by content — an *anchor*: a market
is created once, determined once and settled once, an event is created once (:func:`is_anchor`). So a message is
identified by its own content digest, the digest of the first anchor that FOLLOWS it on the stream, and how many
positions before that anchor it sits (``anchor.seq - msg.seq``). Every gatherer that received the message and the
anchor on one subscription derives the same key, whenever it subscribed (looking forward needs nothing from before
the subscription), whatever the spacing of identical bodies (50 ms or 10 minutes: positions differ), and through
lost messages (``seq`` still counts them). Two distinct messages never share a key: different content, or the same
content at a different position (a stream position holds one message). Anchors are keyed by their content alone.

A message therefore waits for the next anchor (on the real venue markets are created and settled all day, so the
wait is short). Fallbacks, each counted and logged by the caller:
- no anchor within ``max_span`` positions: keyed BACKWARD, by the last anchor before it and the distance since;
  every gatherer that saw both makes the same choice, since it depends on positions only;
- the stream stalls (no message at all for ``hold_ns``; e.g. at the end of a run) or ends (the subscription or
  connection went away): the same backward key. A stall is judged from silence, not from how long a message waited,
  so gatherers decide alike unless the next message arrives within their receive-time spread of the deadline.
  A gatherer that subscribed after that earlier anchor has none and gives the message
  a key of its own copy (``unanchored``), which can duplicate the event if another gatherer keyed it;
- a gap (lost seqs) between a message and its anchor may have hidden an earlier anchor: the key is then wrong
  exactly when the lost messages held an anchor, a window the gatherer reports as a gap.
The gatherer subscribes the lifecycle channel on two connections, so one connection going away does not end the
stream; it drops the copies of a dead subscription's waiting messages when another subscription received them too.

Pure logic, no I/O; one :class:`AnchorChain` per subscription (sid).
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

from venues.kalshi.channels import EVENT_LIFECYCLE, MARKET_LIFECYCLE
from venues.kalshi.keys import digest as _h

__all__ = ["ANCHOR_EVENTS", "AnchorChain", "anchor_key", "is_anchor"]

T = TypeVar("T")

# market_lifecycle_v2 event types that happen once per market; event_lifecycle announces a new event (once).
ANCHOR_EVENTS = frozenset({"created", "determined", "settled"})


def is_anchor(wire_type: str, event_type: str) -> bool:
    """Whether a lifecycle-channel message is unique by content (an anchor)."""
    if wire_type == EVENT_LIFECYCLE:
        return True
    return wire_type == MARKET_LIFECYCLE and event_type in ANCHOR_EVENTS


def anchor_key(content: str) -> str:
    return "l:" + content


class _Held(Generic[T]):
    __slots__ = ("content", "item", "pos", "since_ns")

    def __init__(self, item: T, content: str, pos: int, since_ns: int) -> None:
        self.item = item
        self.content = content
        self.pos = pos
        self.since_ns = since_ns


class AnchorChain(Generic[T]):
    """Keys the messages of one stream by their position relative to anchors (see the module docstring).

    :meth:`push` takes every message of the stream in order (positions strictly increasing, gaps allowed) and returns
    the messages whose key is now decided, each with its key, in stream order (the anchor last)."""

    def __init__(self, max_span: int = 1000, hold_ns: int = 10_000_000_000, unanchored_tag: str = "") -> None:
        self.max_span = max_span
        self.hold_ns = hold_ns
        self.unanchored_tag = unanchored_tag  # makes a fallback key unique to this copy (gatherer/conn/sid)
        self._held: deque[_Held[T]] = deque()
        self._prev: tuple[str, int] | None = None  # (content of the last anchor, its position)
        self.last_pos = 0
        self.last_ns = 0
        self.forward = 0
        self.backward = 0
        self.unanchored = 0

    @property
    def waiting(self) -> int:
        return len(self._held)

    def oldest_ns(self) -> int | None:
        return self._held[0].since_ns if self._held else None

    def push(self, item: T, content: str, pos: int, anchor: bool, now_ns: int) -> list[tuple[T, str]]:
        if pos <= self.last_pos:
            raise ValueError(f"stream position {pos} after {self.last_pos}: positions must increase")
        self.last_pos = pos
        self.last_ns = now_ns
        out = self._past_span(pos)
        if not anchor:
            self._held.append(_Held(item, content, pos, now_ns))
            return out
        for held in self._held:
            self.forward += 1
            out.append((held.item, "l:" + _h(f"{held.content}>{content}-{pos - held.pos}".encode())))
        self._held.clear()
        self._prev = (content, pos)
        out.append((item, anchor_key(content)))
        return out

    def _past_span(self, pos: int) -> list[tuple[T, str]]:
        """Messages that no anchor followed within ``max_span`` positions: keyed backward."""
        out: list[tuple[T, str]] = []
        held = self._held
        while held and pos - held[0].pos > self.max_span:
            out.append(self._backward(held.popleft()))
        return out

    def _backward(self, held: _Held[T]) -> tuple[T, str]:
        if self._prev is None:
            self.unanchored += 1
            return held.item, "l:" + _h(f"{held.content}?{self.unanchored_tag}:{held.pos}".encode())
        self.backward += 1
        content, pos = self._prev
        return held.item, "l:" + _h(f"{held.content}<{content}+{held.pos - pos}".encode())

    def expire(self, now_ns: int) -> list[tuple[T, str]]:
        """The stream stalled (no message for ``hold_ns``): every waiting message is keyed backward."""
        if not self._held or now_ns - self.last_ns < self.hold_ns:
            return []
        return self.close()

    def close(self) -> list[tuple[T, str]]:
        """The stream ended: every waiting message is keyed backward (or unanchored)."""
        out = [self._backward(h) for h in self._held]
        self._held.clear()
        return out

    def drop_waiting(self) -> list[T]:
        """The stream ended and another subscription received the same messages: forget these copies."""
        items = [h.item for h in self._held]
        self._held.clear()
        return items
