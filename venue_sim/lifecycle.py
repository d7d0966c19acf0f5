"""The awkward behaviours of a real venue's market lifecycle, as options (pure, no state).

What a real venue does and a collector must survive, each switchable (:class:`Behaviours`, all off by default) and
scheduled by :class:`venue_sim.load.Generator` on its virtual clock (the message bodies are the truth format's:
the default venue's emulator wire module):

- ``dormant_share``: that share of the markets listed at start (the highest indexes, so whole gatherer
  connections are quiet) never gets data events; they still get lifecycle messages (settlement).
- ``activate_after_ms``: a market created while running stays ``initialized`` this long before ``activated``.
- ``pause_per_s`` / ``pause_markets`` / ``pause_ms`` / ``flap_share``: deactivate/activate cycles
  (``is_deactivated`` true/false; REST status ``inactive``, filter ``paused``; no data while paused) on a small
  fixed pool of markets chosen with weights 1/2, 1/4, 1/8, ..., so identical bodies recur on the same market at
  spacings from ~50 ms (a flap: paused, back 20 ms later, paused again 50 ms after the first) through seconds
  (the first market) to minutes (the last ones).
- ``metadata_per_s``: ``metadata_updated`` messages on a pool of markets whose subtitle/strike flip-flops between
  two values (A, B, A: identical bodies repeat); half the pool uses the older form without ``event_type``.
- ``unknown_per_s``: lifecycle messages with an ``event_type`` no client knows yet (venues add types).
- ``fee_update_per_s``: ``event_fee_update`` set/clear cycles on a pool of events (identical bodies repeat).
- ``event_lifecycle``: an ``event_lifecycle`` message before the first market of a new event is created.

Bad numbers (an otherwise valid delta with an out-of-range value, one of :data:`BAD_NUMBER_VARIANTS`) are a fault,
not a behaviour: :meth:`venue_sim.load.Generator.bad_delta` makes them.
"""

from __future__ import annotations

import msgspec

__all__ = ["BAD_NUMBER_VARIANTS", "FLAP_AGAIN_MS", "FLAP_BACK_MS", "Behaviours"]

# An otherwise valid delta with one bad value: what a venue bug or a new encoding can send.
BAD_NUMBER_VARIANTS: tuple[str, ...] = ("exp", "nan", "digits", "negative")
FLAP_BACK_MS = 20  # a flap: activated this long after deactivated ...
FLAP_AGAIN_MS = 50  # ... and deactivated again this long after the first deactivation


class Behaviours(msgspec.Struct, frozen=True, kw_only=True):
    """Which real-venue behaviours the generator produces, and how often (see the module docstring)."""

    dormant_share: float = 0.0
    activate_after_ms: int = 0
    pause_per_s: float = 0.0
    pause_markets: int = 8
    pause_ms: int = 3000
    flap_share: float = 0.25
    metadata_per_s: float = 0.0
    unknown_per_s: float = 0.0
    fee_update_per_s: float = 0.0
    event_lifecycle: bool = False
    checkpoint_ms: int = 0  # book checkpoints every this many ms of venue time (0 = none but the final one)

    def __post_init__(self) -> None:
        if not 0.0 <= self.dormant_share <= 1.0:
            raise ValueError(f"dormant_share must be in 0..1, got {self.dormant_share}")
        if not 0.0 <= self.flap_share <= 1.0:
            raise ValueError(f"flap_share must be in 0..1, got {self.flap_share}")
        for name in ("activate_after_ms", "pause_ms", "checkpoint_ms", "pause_per_s", "metadata_per_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.unknown_per_s < 0 or self.fee_update_per_s < 0:
            raise ValueError("rates must be >= 0")
        if self.pause_markets < 1:
            raise ValueError("pause_markets must be >= 1")
