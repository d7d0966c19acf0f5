"""What an emitting dedup decision becomes on the events topic; one function both engines call.

A venue event (won or re-emitted) becomes the normalised event of the winning copy, by the normaliser of the
frame's venue (``frame.venue`` looked up in :mod:`venues`, :meth:`venues.interface.Venue.normaliser`: a snapshot's
``ts_ms`` is its position in the delta stream when the gatherer gave it one); a gap report becomes its coverage
record (:func:`dedup_stream.gaps.gap_event`); an alias decision (:attr:`Verdict.ALIAS`) becomes the copy's
lifecycle event marked ``alias`` with its keys, or the copy's delta marked ``alias`` (its higher ordinal). Raises
whatever the mapping raises (``SchemaError``, or a value the venue sent that cannot be represented;
``venues.UnknownVenue`` for a venue no package answers to): the engine dead-letters the frame. The engine passes the
hop stamps the event carries (:mod:`schemas.events`): the winning raw record's Kafka timestamp and when the worker
read it.
"""

from __future__ import annotations

from dedup_stream.gaps import gap_event
from dedup_stream.logic import Decision, Verdict
from schemas import BookDelta, Event, Lifecycle, RawFrame, encode_event
from venues import get_venue
from venues.interface import EventEncoder, FrameNormaliser

__all__ = ["decision_bytes", "decision_event"]

_normalisers: dict[str, FrameNormaliser] = {}  # venue name -> its normaliser, looked up once per venue
_encoders: dict[str, EventEncoder | None] = {}  # venue name -> its event encoder (None: it has none)
_WON, _REEMIT = Verdict.WON, Verdict.REEMIT


def _normalise(frame: RawFrame) -> Event:
    normalise = _normalisers.get(frame.venue)
    if normalise is None:
        normalise = _normalisers[frame.venue] = get_venue(frame.venue).normaliser()
    return normalise(frame)


def decision_event(decision: Decision, raw_ts_ms: int = 0, dedup_ns: int = 0) -> Event:
    """The event to produce for an emitting ``decision`` (``decision.emit`` is true, or an ALIAS), stamped with
    ``raw_ts_ms`` (the raw record's Kafka timestamp, ms) and ``dedup_ns`` (when the worker read it, wall clock)."""
    frame = decision.frame
    assert frame is not None
    if decision.verdict is Verdict.GAP:
        assert decision.gap is not None
        event: Event = gap_event(frame, decision.gap)
    else:
        event = _normalise(frame)
        if frame.kind == "lifecycle" and type(event) is Lifecycle and (frame.alt_keys or frame.weak_key):
            # the event's identity travels with it: every key of this copy (logic: row identity of lifecycle events)
            event.keys = [frame.event_key, *frame.alt_keys, *((decision.link,) if decision.link else ())]
            event.alias = decision.verdict is Verdict.ALIAS
        elif decision.verdict is Verdict.ALIAS and type(event) is BookDelta:
            event.alias = True  # this copy's higher ordinal, for the emitted delta's row (logic: ordinals)
    event.raw_ts_ms = raw_ts_ms
    event.dedup_ns = dedup_ns
    return event


def decision_bytes(decision: Decision, raw_ts_ms: int = 0, dedup_ns: int = 0) -> bytes:
    """``encode_event(decision_event(decision, raw_ts_ms, dedup_ns))``; raises what that raises."""
    frame = decision.frame
    verdict = decision.verdict
    if frame is not None and (verdict is _WON or verdict is _REEMIT):  # a venue event: its normaliser's event
        venue = frame.venue
        try:
            encoder = _encoders[venue]
        except KeyError:
            encoder = _encoders[venue] = get_venue(venue).event_encoder()
        if encoder is not None:
            out = encoder(frame, raw_ts_ms, dedup_ns)
            if out is not None:
                return out
    return encode_event(decision_event(decision, raw_ts_ms, dedup_ns))
