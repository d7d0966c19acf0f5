"""Synthetic venue data for the stages' tests and benchmarks (never used in production): the shape every venue's
``synth`` module draws (:meth:`venues.interface.Venue.synth`).

A venue's synth module provides ``venue_events(n, markets, seed, identical_every, t0_ns)`` (distinct market-data
events: deltas, including identical bodies told apart by their occurrence number, and trades),
``pipeline_events(n, markets, seed, t0_ns, spacing_ns)`` (the mix of kinds a pipeline run on the emulator carries)
and ``payload(msg_type, seq, msg)`` (one message's bytes as the venue's WebSocket carries it); the default venue's
also provides single-message bodies for tests that write a scenario message by message (``delta_body``,
``trade_body``, ``ticker_body``, ``lifecycle_body``). Turning events into each gatherer's frames is venue-neutral:
:func:`dedup_stream.synth.gatherer_copies`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["VenueEvent"]


@dataclass(frozen=True, slots=True)
class VenueEvent:
    """One distinct event as the venue sends it, before any gatherer receives it."""

    venue: str  # the venue whose wire format ``msg`` is in
    market: str
    kind: str  # a RawFrame kind: "delta" | "trade" | "ticker" | "snapshot" | "lifecycle"
    event_key: str
    msg: bytes  # the message body (JSON) inside the venue's envelope
    msg_type: str  # the envelope's message type
    t_ns: int  # when the venue sent it
    venue_ms: int | None = None  # snapshots: position in the market's delta stream (the gatherer's decision)
