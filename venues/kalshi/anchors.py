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

A message therefore waits for the next anchor (seconds in the demo: its latency is the time to the next market
created or settled), and until its *trail* is complete: every further anchor received within :data:`TRAIL_NS` of the
message (up to :data:`TRAIL_ANCHORS`) adds its key against it (true identities like the forward key, the one a copy
that lost the earlier anchors derives). So a copy of an equal body sent within the dedup stage's weak window after
it, keyed against any of those anchors, shares a reference with it and never joins it by receive time (residual (3)
below). A copy keyed forward leaves :data:`TRAIL_NS` after the message, or at its forward anchor if that came later
(no anchor can join its trail then). A copy that may have lost an anchor before its forward one (a position lost in
between: no NEXT) is held :data:`TRAIL_NS` after its forward anchor instead, so that a gatherer's copies of one
message leave in the order their forward anchors came (it leaves after its other subscription's copy that received
the earlier anchor, as when each left at its anchor); across its connections :mod:`ingest.held_order` releases them
in that order, and a subscription that ends or a gatherer that shuts down keeps them in it. A copy keyed at an anchor
never leaves before one held ahead of it on its stream (it waits for that one's due time; copies keyed at a stall or
at the stream's end go at once). A held copy waits like any other: a gatherer killed meanwhile never sends it, and
when no other gatherer received the message (one subscribed late, or away) it is lost. A clean copy's hold lasts
until the later of its anchor and its trail, at most :data:`TRAIL_NS` past the message's own wait for the anchor (an
earlier version held every copy :data:`TRAIL_NS` past its anchor, and lost one that way in an end-to-end run with a
kill).
With the cap (below) there is no trail.
``max_wait_ns`` (``gather.anchor_max_wait_ms``) caps the wait for the next anchor for a message with an anchor
before it: it is keyed BACKWARD alone after it (below). Such a capped copy lacks the forward key, the only key a
LOOSE copy of the same message has (a gatherer restarted or resubscribed since the anchor before it), so the two
could meet by weak key only, by receive time; that is how a 0.5-s cap once stored a paused-market message twice (a
market paused, resumed and paused again within 50 ms, 3 s after a gatherer restarted, whose receive clock ran 65 ms
late: its first copy took the second message's event, and its second copy then had none left to join) and can lose
one (a loose copy read first takes the event of an equal body read later). So with the cap on, (a) when the next
anchor comes, every message released at the cap since the last anchor is keyed AGAIN with every key it would have
had if it had waited, forward first (a *supplement*, counted ``supplements``: the dedup stage takes it as a later
copy that brings the forward key, adds it to the event and its row, and learns the anchor reference that keeps other
copies from joining it wrongly), and (b) a loose copy keyed at an anchor is released :data:`LOOSE_DELAY_NS` later,
so that the dedup stage has read the other gatherers' supplements, released at that same anchor, and meets them by
key. So the cap is exactly-once only while the dedup stage reads the gatherers' topics less than that delay apart
(the live run, as the demo does). Read further apart (a dedup backlog, or ``mdpipe replay dedup``, which may read
one topic whole before the next), copies are matched by receive time as above: a loose copy read before every
supplement of its message, or of a message no other gatherer received up to the next anchor, can join the event of
an equal body (a second row for another), and a copy released at the cap read after the loose copy of an equal body
sent just after it (a gatherer restarted between the two) can join that copy's event (its own message loses its
row). Hence the cap is OFF by default (``gather.anchor_max_wait_ms`` 0); the uncapped keys meet by key in any read
order. Fallbacks, each counted by the caller:
- no anchor within ``max_span`` positions: keyed BACKWARD, by the last anchor before it and the distance since;
  every gatherer that saw both makes the same choice, since it depends on positions only;
- the stream stalls (no message at all for ``hold_ns``; e.g. at the end of a run) or ends (the subscription or
  connection went away): the same backward key. A stall is judged from silence, so gatherers may decide
  differently (one keys backward, another sees the next message in time and keys forward).

Copies of one message must meet whatever each subscription saw, so a copy carries every key it can derive
(``RawFrame.alt_keys``; the dedup stage treats a copy as a duplicate if ANY of its keys was seen, and registers all
of them). A key against ANY anchor the subscription received is a true identity (``seq`` counts lost messages too,
so the distance is exact): extra keys never merge two events, they only let copies meet (unless a join by receive
time, below, put one on the wrong event: a later copy carrying it then meets that event by key).
- A message with an anchor before it carries the backward key as well (the forward key first). Every copy that
  received that anchor holds the SAME backward key, whether it stalled or not, and whether a gap then swallowed the
  next anchor (its forward key differs): the stall split and a gap over the following anchor meet on it. A gap
  between the anchor and the message may have swallowed a later anchor: that copy meets the others on its forward
  key, unless it stalled or lost the next anchor as well (counted ``uncertain``).
- A message with NO anchor before it on its subscription (a gatherer restarted, or subscribed, since that anchor;
  counted ``loose``) has only the forward key, or when the stream stalled or ended before any anchor, a key of its
  own copy (``unanchored``: gatherer:conn:sid and position). The gatherers that keyed the message backward at a
  stall never learn its forward key, and at the end of a run no forward key exists at all.
So every non-anchor copy also carries a ``weak_key`` (its content digest) and ``weak_refs`` (the anchors its keys
are positions against). In the dedup stage a copy none of whose keys was seen joins the emitted copy of the same
body received within the weak window (a few seconds of receive clock, below ``gather.anchor_hold_s``) that its
subscription has not contributed to and that has no key against an anchor it has a key against (two copies with
keys against one anchor that share none sit at two positions); ``dedup_stream.logic`` has the rules (an
unanchored copy paired with the wrong one of two equal bodies sent closer together than the receive clocks'
spread, a flap, is put right by seq when its subscription's copy of the other one comes: "Placed again by seq"). Every
lifecycle copy of every subscription is therefore recorded (only anchors once per gatherer): which subscriptions
contributed to an event is what keeps two equal bodies of one subscription apart.
What remains, counted: (1) a loose copy with no key against an anchor (``unanchored``) is matched by receive time
alone; when its subscription missed an event whose body equals its own and was received within the window, it can
join that event's row (one row for two events, if no other copy of its own event comes) — a restarted gatherer,
equal bodies within seconds and a stall before any anchor, all at once. (2) a copy of a message with a gap on both
sides (``uncertain``) whose keys miss the others' and which cannot join (a common anchor, or outside the window) is
a second row: a duplicate is chosen over a wrong merge. (3) two equal bodies within the weak window with the first
one's forward anchor between them, and a subscription that received the second but not the first and keys the second
at a stall against none of the anchors a copy of the first is keyed against (its forward anchor and its trail) among
its last ``BACK_ANCHORS``, one of those two copies without a clean anchor before it (its subscription received none
since it subscribed, or lost a position since: no ``PREV`` reference, on which the two would clash): the two share
no reference, and whichever is read as the other's first copy joins it (one row for two events); every other copy of
the joined message then meets that row by the keys the join registered. Live this needs that copy read before the
other gatherers' copies of its body (their stall releases race); a replay or backlog that reads its topic first
needs no race. Before the trail a gatherer restarted after the first's forward anchor was enough, or a subscription
that lost it, or more than ``BACK_ANCHORS`` anchors between (the property tests drew it in ~2 % of CI runs); now the
two subscriptions must have no anchor between the two bodies in common (a gap over the first body and the anchors
after it, or each losing the other's), or more anchors must lie between them than the first's trail (its forward
anchor and ``TRAIL_ANCHORS`` more) and the second's backward anchors reach. Telling those apart needs the order of
anchors, which the dedup stage cannot learn in the message's partition (anchors are other markets' messages).
``mdpipe_dedup_weak_matches`` counts every weak join.
Row identity. Because of a stall (or the cap), copies of one message lead with different keys (a copy keyed at the
stall or the cap: its backward key, and its supplement its forward key; one that saw the next anchor in time: its
forward key; a loose copy: its forward key only), and no key is shared by every copy when it is released. The row takes
the winner's key, and a dedup replay (fresh state, another read order) can have another winner. So the dedup stage
emits every key of the winner with the event and an alias record whenever a later copy brings keys the event lacked
(``dedup_stream.logic``: row identity of lifecycle events), the row keeps them all, and the sink stores a lifecycle
event only when no row of its market shares one of its keys (``sink.lifecycle``): every copy the live run read has its
keys on the row, so a replay's winner, whichever it is, meets it.
Left over: an alias record lost with a dedup worker killed between its
state write and the record's delivery (its copy is a plain duplicate when re-read), after which a replay whose
winner is that very copy stores a second row.
The gatherer subscribes the lifecycle channel on two connections, so one connection going away does not end the
stream; it drops the copies of a dead subscription's waiting messages when its other subscription certainly received
every one of them too (:func:`received_by`: the two aligned on an anchor both received, the other holding an equal
body at each one's position), else they are keyed as at the stream's end (:meth:`AnchorChain.close`) and sent. All or
none: a copy sent beside a dropped one of an equal body could take the dropped one's place in a weak join, where the
other subscription's copy of it, keyed against other anchors, then joins the sent one's event (one row for two). That
a subscription was live when a message came is no proof that it received it: its subscribe may have taken effect at
the venue after the message left on the other connection (an end-to-end run lost a message that no other gatherer
received that way, the venue then closing the connection it came on).

Pure logic, no I/O; one :class:`AnchorChain` per subscription (sid).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Generic, NamedTuple, TypeVar

from venues.kalshi.channels import EVENT_LIFECYCLE, MARKET_LIFECYCLE
from venues.kalshi.keys import digest as _h

__all__ = [
    "ANCHOR_EVENTS",
    "LOOSE_DELAY_NS",
    "MAX_WAIT_NS",
    "AnchorChain",
    "LcKey",
    "Seen",
    "anchor_key",
    "is_anchor",
    "received_by",
    "weak_key",
]

T = TypeVar("T")

# Backward keys: against this many of the last anchors before a message (the newest is THE backward key; the older
# ones let the dedup stage tell two equal bodies apart when copies were keyed against different anchors).
BACK_ANCHORS = 3
NEXT = ">"  # a copy's reference: its forward anchor is the first anchor after it (no position lost in between)
PREV = "<"  # ... its newest backward anchor is the last anchor before it

# market_lifecycle_v2 event types that happen once per market; event_lifecycle announces a new event (once).
ANCHOR_EVENTS = frozenset({"created", "determined", "settled"})

# The cap on the wait, when switched on (gather.anchor_max_wait_ms; see the module docstring):
# the longest a message with an anchor before it waits for the next anchor (its forward key) before it is keyed
# backward alone. Anchors come as markets are created and settled, seconds apart: without a cap every lifecycle
# message waited for the next one (its latency = the time to the next anchor). The backward key is what every copy
# that received the previous anchor shares anyway; the wait only buys the forward key, which loose copies (a gatherer
# subscribed since that anchor) meet on: the supplement at the next anchor brings it (module docstring).
MAX_WAIT_NS = 500_000_000
# With the cap on, a loose copy (no anchor before it on its subscription) keyed at an anchor is released this much
# later, so that the dedup stage usually reads the other gatherers' supplements (their capped copies keyed again with
# the forward key, at that same anchor) first and meets them by key instead of by weak key (see the module docstring).
LOOSE_DELAY_NS = 1_000_000_000
# Every further anchor received within this of a message keyed forward (up to TRAIL_ANCHORS of them) adds its key
# against that anchor (its *trail*), and the copy is held until then (module docstring): the dedup stage's weak window
# (1 s) plus the gatherers' receive spread. A copy of an equal body sent within the window after it, keyed against an
# anchor of that trail, shares a reference with it and so never joins it (residual (3), module docstring).
TRAIL_NS = 1_500_000_000
TRAIL_ANCHORS = 8


def is_anchor(wire_type: str, event_type: str) -> bool:
    """Whether a lifecycle-channel message is unique by content (an anchor)."""
    if wire_type == EVENT_LIFECYCLE:
        return True
    return wire_type == MARKET_LIFECYCLE and event_type in ANCHOR_EVENTS


def anchor_key(content: str) -> str:
    return "l:" + content


def weak_key(content: str) -> str:
    """The weak key of a lifecycle message: its content digest (equal for every repeat of the body)."""
    return "w:" + content


Seen = tuple[int, str, bool]  # (position, content, anchor) of one message a subscription received


class LcKey(NamedTuple):
    """The identity of one copy: ``key`` (the frame's event_key), ``alt`` (more keys of the same copy), ``weak``
    (False for an anchor: unique by content), ``refs`` (the frame's ``weak_refs``: the anchors its keys are
    positions against; two copies with keys against one anchor that share no key sit at two positions) and
    ``shared`` (the key the gatherer's other subscription
    derives for the same message: a gatherer records each message once)."""

    key: str
    alt: tuple[str, ...]
    weak: bool
    refs: tuple[str, ...]
    shared: str


class _Held(Generic[T]):
    __slots__ = ("clean", "content", "item", "pos", "since_ns")

    def __init__(self, item: T, content: str, pos: int, since_ns: int, clean: bool) -> None:
        self.item = item
        self.content = content
        self.pos = pos
        self.since_ns = since_ns
        self.clean = clean  # an anchor came before it on this stream and no position was lost in between


class _Trailing(Generic[T]):
    """A copy already keyed, held back until ``due_ns``: its trail (and with the cap, a loose copy's delay)."""

    __slots__ = ("due_ns", "held", "key", "trail")

    def __init__(self, due_ns: int, held: _Held[T], key: LcKey) -> None:
        self.due_ns = due_ns
        self.held = held
        self.key = key
        self.trail = 0  # keys added against anchors after its forward anchor


class AnchorChain(Generic[T]):
    """Keys the messages of one stream by their position relative to anchors (see the module docstring).

    :meth:`push` takes every message of the stream in order (positions strictly increasing, gaps allowed) and returns
    the messages whose key is now decided, each with its :class:`LcKey`, in stream order (the anchor last)."""

    def __init__(
        self,
        max_span: int = 1000,
        hold_ns: int = 10_000_000_000,
        unanchored_tag: str = "",
        max_wait_ns: int = 0,
        trail_ns: int = TRAIL_NS,
    ) -> None:
        self.max_span = max_span
        # a copy keyed forward gathers keys against later anchors this long (0: none; none with the cap, whose
        # supplements and loose delay order copies their own way)
        self.trail_ns = 0 if max_wait_ns else trail_ns
        self.hold_ns = hold_ns
        self.max_wait_ns = max_wait_ns  # an anchored message waits at most this long for its forward key (0: no cap)
        self.unanchored_tag = unanchored_tag  # makes a loose copy's own key unique to it (gatherer/conn/sid)
        self._held: deque[_Held[T]] = deque()
        self._prev: tuple[str, int] | None = None  # (content of the last anchor, its position)
        self._before: deque[tuple[str, int]] = deque(maxlen=BACK_ANCHORS)  # the last anchors, oldest first
        self._next = ""  # content of the anchor being pushed (the forward keys' reference)
        self._gap_at = 0  # position of the last message received after lost positions (0: none lost)
        self.last_pos = 0
        self.last_ns = 0
        # (position, content, anchor) of the last messages received: what another subscription of the stream asks
        # when it ends (received_by); a copy waits at most max_span positions, so twice that covers a peer ahead of it
        self.recent: deque[Seen] = deque(maxlen=2 * max_span + 2)
        self.forward = 0
        self.backward = 0
        self.unanchored = 0  # keyed with no anchor on either side (loose, own key only)
        self.loose = 0  # copies with no anchor before them (their keys are shared by few: matched by weak key)
        self.uncertain = 0  # copies with no key that every copy of theirs shares for sure (a gap or no anchor)
        self.supplements = 0  # copies keyed again, with their forward key, after they were released at the cap
        # with the cap on: messages released at the cap since the last anchor (keyed again when the next one comes);
        # copies keyed forward, held for their trail (and with the cap, loose copies for ``loose_delay_ns``), in
        # stream order
        self._capped: deque[_Held[T]] = deque()
        self._late: list[_Trailing[T]] = []
        self.loose_delay_ns = LOOSE_DELAY_NS if max_wait_ns else 0

    @property
    def waiting(self) -> int:
        return len(self._held) + len(self._late)

    def push(self, item: T, content: str, pos: int, anchor: bool, now_ns: int) -> list[tuple[T, LcKey]]:
        if pos <= self.last_pos:
            raise ValueError(f"stream position {pos} after {self.last_pos}: positions must increase")
        if self.last_pos and pos != self.last_pos + 1:
            self._gap_at = pos
        self.last_pos = pos
        self.last_ns = now_ns
        self.recent.append((pos, content, anchor))
        out = self._past_span(pos)
        if not anchor:
            clean = self._prev is not None and self._gap_at <= self._prev[1]
            self._held.append(_Held(item, content, pos, now_ns, clean))
            return out
        self._next = content
        out.extend(self._supplements(content, pos))
        self._extend_trails(content, pos, now_ns)
        for held in self._held:
            self.forward += 1
            key = self._keys(held, self._forward(held, content, pos))
            due = self._trail_due(held, key, now_ns)
            if self.loose_delay_ns and self._prev is None:  # loose: after the others' supplements (docstring)
                due = max(due, now_ns + self.loose_delay_ns)
            behind = bool(self.trail_ns and self._late)  # stream order: after a copy held ahead of it (even overdue)
            if behind:
                due = max(due, self._late[-1].due_ns)
            if behind or due > now_ns:
                self._late.append(_Trailing(due, held, key))
            else:
                out.append((held.item, key))
        self._held.clear()
        self._prev = (content, pos)
        self._before.append(self._prev)
        key = anchor_key(content)
        out.append((item, LcKey(key, (), False, (), key)))
        return out

    def _trail_due(self, held: _Held[T], key: LcKey, now_ns: int) -> int:
        """When a copy keyed forward now, at its forward anchor, leaves: once its trail is complete (``trail_ns``
        after the message; at once if the anchor came later, when no anchor can join its trail). A copy that may
        have lost an anchor before its forward one (no :data:`NEXT`) is held ``trail_ns`` after its anchor instead,
        so that a gatherer's copies of one message leave in the order their forward anchors came: it leaves after
        its other subscription's copy that received the earlier anchor (due by then, unless that connection received
        the message after this one received its anchor: receive clocks more than the anchors' spacing apart)."""
        if not self.trail_ns:
            return now_ns
        if NEXT not in key.refs:
            return now_ns + self.trail_ns
        return max(now_ns, held.since_ns + self.trail_ns)

    def _forward(self, held: _Held[T], content: str, pos: int) -> tuple[str, bool]:
        """The forward key of ``held`` against the anchor ``content`` at ``pos``, and whether no position was lost
        between them."""
        return "l:" + _h(f"{held.content}>{content}-{pos - held.pos}".encode()), self._gap_at <= held.pos

    def _extend_trails(self, content: str, pos: int, now_ns: int) -> None:
        """The anchor ``content`` at ``pos`` came: each copy held for its trail that received it within
        ``trail_ns`` gains its key against it (a forward key, not the first one: no :data:`NEXT`)."""
        for t in self._late:
            held = t.held
            if t.trail < TRAIL_ANCHORS and now_ns - held.since_ns <= self.trail_ns and pos - held.pos <= self.max_span:
                key = self._forward(held, content, pos)[0]
                t.key = t.key._replace(alt=(*t.key.alt, key), refs=(*t.key.refs, content))
                t.trail += 1

    def _supplements(self, content: str, pos: int) -> list[tuple[T, LcKey]]:
        """The messages released at the cap since the last anchor, keyed again now that the next anchor came: every
        key they would have had if they had waited (forward first). Counted apart (``supplements``), not again as
        forward/uncertain."""
        counters = self.forward, self.backward, self.unanchored, self.loose, self.uncertain
        out = [
            (h.item, self._keys(h, self._forward(h, content, pos)))
            for h in self._capped
            if pos - h.pos <= self.max_span
        ]
        self.forward, self.backward, self.unanchored, self.loose, self.uncertain = counters
        self.supplements += len(out)
        self._capped.clear()
        return out

    def _keys(self, held: _Held[T], fwd: tuple[str, bool] | None) -> LcKey:
        """The keys of a waiting message: forward (if an anchor came: its key and whether no position was lost
        before it), backward against the last anchors before it, else its own. ``refs``: the anchors they are
        positions against, plus :data:`NEXT` / :data:`PREV` when no lost position can have hidden an anchor between
        the message and its forward / backward anchor (two such copies of one message share that key). A copy with
        neither is counted ``uncertain``; one without an anchor before it ``loose``."""
        refs: tuple[str, ...] = ()
        keys: tuple[str, ...] = ()
        if fwd is not None:
            keys = (fwd[0],)
            refs = (self._next, NEXT) if fwd[1] else (self._next,)
        if self._prev is None:
            self.loose += 1
            if fwd is None:
                own = "l:" + _h(f"{held.content}?{self.unanchored_tag}:{held.pos}".encode())
                self.unanchored += 1
                self.uncertain += 1
                return LcKey(own, (), True, (), own)
        else:
            keys += tuple("l:" + _h(f"{held.content}<{c}+{held.pos - p}".encode()) for c, p in reversed(self._before))
            refs += tuple(c for c, _ in reversed(self._before))
            if held.clean:
                refs += (PREV,)
        self.uncertain += NEXT not in refs and PREV not in refs
        return LcKey(keys[0], keys[1:], True, refs, keys[0])

    def _past_span(self, pos: int) -> list[tuple[T, LcKey]]:
        """Messages that no anchor followed within ``max_span`` positions: keyed backward."""
        out: list[tuple[T, LcKey]] = []
        held = self._held
        while held and pos - held[0].pos > self.max_span:
            out.append(self._backward(held.popleft()))
        return out

    def _backward(self, held: _Held[T]) -> tuple[T, LcKey]:
        if self._prev is not None:
            self.backward += 1
        return held.item, self._keys(held, None)

    def due_ns(self) -> int | None:
        """When :meth:`expire` next keys something, if no message comes first (None: nothing waits)."""
        late = self.held_due_ns()
        if not self._held:
            return late
        stall = self.last_ns + self.hold_ns
        if late is not None:
            stall = min(stall, late)
        if self.max_wait_ns and self._prev is not None:
            return min(stall, self._held[0].since_ns + self.max_wait_ns)
        return stall

    def expire(self, now_ns: int) -> list[tuple[T, LcKey]]:
        """The stream stalled (no message for ``hold_ns``): every waiting message is keyed backward. Otherwise a
        message with an anchor before it that waited ``max_wait_ns`` for the next anchor is keyed backward alone
        (every copy that received that anchor carries the same backward key, see the module docstring); a message
        with none before it (loose) keeps waiting for its forward key."""
        out = self.release_due(now_ns)
        held = self._held
        if not held:
            return out
        if now_ns - self.last_ns >= self.hold_ns:
            return out + self.close()
        if self.max_wait_ns and self._prev is not None:
            while held and now_ns - held[0].since_ns >= self.max_wait_ns:
                capped = held.popleft()
                self._capped.append(capped)
                out.append(self._backward(capped))
        return out

    def close(self) -> list[tuple[T, LcKey]]:
        """The stream ended: every waiting message is keyed backward (or by its own key: loose). Copies held for their
        trail stay held until due (the caller releases them in due order: :meth:`held_due_ns`, :meth:`release_due`);
        with the cap, loose copies held for their delay go now."""
        out = [] if self.trail_ns else self.release_keyed()
        out += [self._backward(h) for h in self._held]
        self._held.clear()
        self._capped.clear()  # no next anchor will come on this stream
        return out

    def oldest_unkeyed_ns(self) -> int | None:
        """Receive time of the oldest message still waiting for its key (None: none)."""
        return self._held[0].since_ns if self._held else None

    def held_due_ns(self) -> int | None:
        """When the first copy keyed and held back (its trail, or a loose copy's delay) is due (None: none held)."""
        return min(t.due_ns for t in self._late) if self._late else None

    def release_due(self, now_ns: int) -> list[tuple[T, LcKey]]:
        """The held-back copies whose time came, in stream order."""
        due = self.held_due_ns()
        if due is None or due > now_ns:
            return []
        out = [(t.held.item, t.key) for t in self._late if t.due_ns <= now_ns]
        self._late = [t for t in self._late if t.due_ns > now_ns]
        return out

    def release_keyed(self) -> list[tuple[T, LcKey]]:
        """Every copy already keyed and held back (its trail, or a loose copy's delay): released as it is now."""
        out = [(t.held.item, t.key) for t in self._late]
        self._late.clear()
        return out

    def waiting_positions(self) -> list[int]:
        """Positions of the copies :meth:`drop_waiting` drops: those not keyed yet (and with the cap, the loose copies
        held for their delay)."""
        late = [] if self.trail_ns else [t.held.pos for t in self._late]
        return late + [h.pos for h in self._held]

    def drop_waiting(self) -> list[T]:
        """The stream ended and another subscription received the same messages: forget the copies not keyed yet
        (and with the cap, the loose copies held for their delay; copies held for their trail stay, as in
        :meth:`close`)."""
        items = [h.item for h in self._held]
        if not self.trail_ns:
            items = [t.held.item for t in self._late] + items
            self._late.clear()
        self._held.clear()
        self._capped.clear()
        return items


def received_by(mine: Iterable[Seen], theirs: Iterable[Seen], positions: Iterable[int]) -> set[int]:
    """Which of ``positions`` (of subscription ``mine``'s messages) another subscription of the same venue stream
    certainly received, from what each received last (``AnchorChain.recent``).

    Each subscription numbers the stream its own way, but both count every message, so one offset maps one onto the
    other. Only an anchor both received fixes it (unique by content: an anchor's content seen twice in either window
    does not count, and two common anchors that disagree leave nothing certain). A position counts as received when
    the other subscription holds a message of equal content at its image. Without a common anchor the answer is none:
    equal bodies recur, and a subscription live when the message came may still have started after it at the venue."""
    repeated: set[str] = set()
    their_at, their_anchors = _index(theirs, repeated)
    mine_at, my_anchors = _index(mine, repeated)
    offsets = {their_anchors[c] - pos for c, pos in my_anchors.items() if c in their_anchors and c not in repeated}
    if len(offsets) != 1:
        return set()
    (offset,) = offsets
    return {p for p in positions if p in mine_at and their_at.get(p + offset) == mine_at[p]}


def _index(seen: Iterable[Seen], repeated: set[str]) -> tuple[dict[int, str], dict[str, int]]:
    """Content by position, and position by anchor content (an anchor seen twice goes into ``repeated``)."""
    at: dict[int, str] = {}
    anchors: dict[str, int] = {}
    for pos, content, anchor in seen:
        at[pos] = content
        if anchor:
            if content in anchors:
                repeated.add(content)
            anchors[content] = pos
    return at, anchors
