"""Polymarket as the stages see it: the :class:`venues.interface.Venue` the registry returns for ``polymarket``.

Adapts the stages' keyword arguments to this venue's pieces: a session gets ``sub_cap`` as its asset cap (at most
:data:`venues.polymarket.wire.MAX_ASSETS_PER_CONNECTION`) and ``snapshot_hold_s`` as its book hold; the lifecycle
arguments are ignored (the ``market`` channel has no lifecycle stream: markets come and go through discovery).
The market channel needs no authentication, so the signer sends no headers.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from venues.interface import Discovery, EmulatorProfile, FrameNormaliser, Signer, TruthNormaliser, Venue, VenueSession

__all__ = ["NoAuth", "Polymarket"]


class NoAuth:
    """The market channel and public REST reads are unauthenticated [doc]."""

    def __init__(self, key_id: str = "") -> None:
        self.key_id = key_id

    def headers(self, ts_ms: int | None = None, method: str = "GET", path: str = "") -> dict[str, str]:
        return {}


class Polymarket(Venue):
    name = "polymarket"
    channels = ("market",)
    lifecycle_channel = ""
    max_markets_per_connection = 500  # wire.MAX_ASSETS_PER_CONNECTION (a test holds them equal)
    trade_ids = False  # last_trade_price carries no trade id (verify matches trades by content)
    needs_auth = False
    # a re-sent message is indistinguishable from a second identical one (no sequence numbers): venues.polymarket.keys
    silent_faults = frozenset({"redeliver"})
    # the demo's emulator: every market is two tokens and a gatherer holds them all, at most 500 per connection
    demo_markets = 2_000
    demo_rate = 1_000.0

    def session(self, **kwargs: Any) -> VenueSession:
        from venues.polymarket import wire
        from venues.polymarket.session import PolymarketSession

        cap = kwargs.get("sub_cap") or wire.MAX_ASSETS_PER_CONNECTION
        return PolymarketSession(  # type: ignore[return-value]
            gatherer=kwargs["gatherer"],
            conn_id=kwargs["conn_id"],
            emit=kwargs["emit"],
            dead=kwargs["dead"],
            keyer=kwargs.get("keyer"),
            stats=kwargs.get("stats"),
            log=kwargs.get("log"),
            max_assets=min(cap, wire.MAX_ASSETS_PER_CONNECTION),
            book_hold_s=kwargs.get("snapshot_hold_s", 1.0),
        )

    def discovery(self, rest_url: str, page_limit: int) -> Discovery | None:
        """A Gamma keyset walk from ``rest_url`` (the Gamma base URL; "" = the venue's), at most 500 a page."""
        from venues.polymarket.discovery import Walk

        return Walk("gamma", base_url=rest_url, limit=max(1, min(page_limit, 500)))

    def keyer(self, horizon_ms: int) -> Any:
        from venues.polymarket.keys import PolymarketKeyer

        return PolymarketKeyer(horizon_ms)

    def session_stats(self) -> Any:
        from venues.polymarket.session import SessionStats

        return SessionStats()

    def signer(self, key_id: str, pem: str = "", pem_path: str = "") -> Signer:
        return NoAuth(key_id)

    def normaliser(self) -> FrameNormaliser:
        from venues.polymarket.normalise import to_event

        return to_event

    def truth_normaliser(self) -> TruthNormaliser:
        """Normalises one Polymarket message body. The emulator's truth is venue-neutral events (two bid ladders): a
        verifier first turns them into Polymarket messages with :class:`venues.polymarket.emulator.Profile`."""
        from venues.polymarket.normalise import message_to_event

        def normalise(kind: str, msg: bytes, *, envelope_type: str = "", **kw: Any) -> Any:
            return message_to_event(kind, msg, **kw)

        return normalise

    def truth_translator(self, seed: int) -> Any:
        from venues.polymarket.verify import Translator

        return Translator(seed)

    def emulator_wire(self) -> ModuleType:
        from venues.polymarket import emulator

        return emulator

    def emulator(
        self, *, seed: int, markets: Any, books: Any = None, sub_cap: int = 0, recorder: Any = None
    ) -> EmulatorProfile | None:
        """The market channel over ``markets``; ``books`` is not read (the profile mirrors the books itself)."""
        from venues.polymarket.emulator import emulator_profile

        return emulator_profile(seed, markets, sub_cap=sub_cap, recorder=recorder)
