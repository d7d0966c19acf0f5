"""What an emitting dedup decision becomes on the events topic; one function both engines call.

A venue event (won or re-emitted) becomes the venue adapter's normalised event of the winning copy
(:func:`schemas.kalshi.to_event`: a snapshot's ``ts_ms`` is its position in the delta stream when the gatherer
gave it one); a gap report becomes its coverage record (:func:`dedup_stream.gaps.gap_event`). Raises whatever the
mapping raises (``SchemaError``, or a value the venue sent that cannot be represented): the engine dead-letters
the frame.
"""

from __future__ import annotations

from dedup_stream.gaps import gap_event
from dedup_stream.logic import Decision, Verdict
from schemas import Event
from schemas.kalshi import to_event

__all__ = ["decision_event"]


def decision_event(decision: Decision) -> Event:
    """The event to produce for an emitting ``decision`` (``decision.emit`` is true)."""
    frame = decision.frame
    assert frame is not None
    if decision.verdict is Verdict.GAP:
        assert decision.gap is not None
        return gap_event(frame, decision.gap)
    return to_event(frame)
