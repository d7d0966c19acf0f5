"""Kalshi trade-api v2: everything of the venue in one folder, exposed to the stages as ``VENUE``.

Modules: ``protocol`` (the gatherer's sans-I/O session of one connection), ``snapshots`` (a snapshot's position in
the delta stream), ``anchors`` (lifecycle keys by position), ``keys`` (event keys), ``auth`` (upgrade and REST
header signing), ``discovery`` (REST listings by status, look-ups, the status and lifecycle vocabulary),
``messages`` (wire structs and normalisation to the shared events), ``channels`` (channel and envelope names,
declared once), ``emulator`` (the emulator's Kalshi: message bodies, books as the wire spells them, the WebSocket
session, REST and the profile the emulator's server hosts; also the wire formats the emulator speaks), ``synth``
(synthetic data for the stages' tests and benchmarks). Modules other than ``channels`` are imported when a method
is called (see :mod:`venues.interface`).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from venues.interface import (
    EmulatorProfile,
    EventEncoder,
    FrameNormaliser,
    Signer,
    StatusListings,
    TruthNormaliser,
    Venue,
    VenueSession,
)
from venues.kalshi.channels import CHANNELS, MARKET_LIFECYCLE

__all__ = ["VENUE", "Kalshi"]


class Kalshi(Venue):
    name = "kalshi"
    channels = CHANNELS
    lifecycle_channel = MARKET_LIFECYCLE
    default = True  # the first venue: configs written before venue.name had a choice mean it

    def session(self, **kwargs: Any) -> VenueSession:
        from venues.kalshi.protocol import KalshiSession

        return KalshiSession(**kwargs)

    def keyer(self, horizon_ms: int) -> Any:
        from venues.kalshi.keys import EventKeyer

        return EventKeyer(horizon_ms)

    def session_stats(self) -> Any:
        from venues.kalshi.protocol import SessionStats

        return SessionStats()

    def discovery(self, rest_url: str, page_limit: int) -> StatusListings:
        """``GET /markets`` listings by status and look-ups by ticker at ``rest_url`` (the trade-api base URL)."""
        from venues.kalshi.discovery import Listings

        return Listings(rest_url, page_limit)

    def signer(self, key_id: str, pem: str = "", pem_path: str = "") -> Signer:
        from venues.kalshi.auth import Signer as KalshiSigner

        return KalshiSigner.from_config(key_id, pem, pem_path)

    def normaliser(self) -> FrameNormaliser:
        from venues.kalshi.messages import to_event

        return to_event

    def event_encoder(self) -> EventEncoder:
        from venues.kalshi.event_bytes import event_bytes

        return event_bytes

    def truth_normaliser(self) -> TruthNormaliser:
        from venues.kalshi.messages import msg_to_event

        return msg_to_event

    def emulator_wire(self) -> ModuleType:
        from venues.kalshi import emulator

        return emulator

    def emulator(
        self, *, seed: int, markets: Any, books: Any = None, sub_cap: int = 0, recorder: Any = None
    ) -> EmulatorProfile | None:
        from venues.kalshi.emulator.profile import emulator_profile

        if books is None:
            raise ValueError("the emulator's Kalshi sessions read the generator's books: pass books")
        return emulator_profile(markets, books, sub_cap=sub_cap, recorder=recorder)

    def accelerators(self) -> dict[str, bool]:
        from venues.kalshi import keys

        # compiled, and from the current sources: a build older than a function falls back to Python silently
        current = keys.MESSAGE_PARTS is not None and keys._snapshot_parts is not None
        return {"venues.kalshi._deltakey": keys.ACCELERATED and current}

    def synth(self) -> ModuleType:
        from venues.kalshi import synth

        return synth


VENUE = Kalshi()
