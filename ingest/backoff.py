"""Reconnect/retry delays: exponential backoff with full jitter, capped (pure; randomness injectable)."""

from __future__ import annotations

import random
from collections.abc import Iterator

__all__ = ["backoff"]


def backoff(
    initial: float = 0.5, maximum: float = 30.0, factor: float = 2.0, rng: random.Random | None = None
) -> Iterator[float]:
    """Delays: uniform(0.5*d, d) for d = initial, initial*factor, ... capped at ``maximum``. Never ends."""
    rnd = rng or random.Random()
    delay = initial
    while True:
        yield rnd.uniform(delay / 2, delay)
        delay = min(maximum, delay * factor)
