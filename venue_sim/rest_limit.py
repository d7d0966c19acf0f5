"""The emulator's REST rate limit: one token bucket per client (its key id header, else its address).

The default venue documents per-account token buckets (a request costs tokens, the bucket refills at the tier's
rate) and a rejected request answered ``429 Too Many Requests`` with body ``{"error": "too many requests"}`` and
**no** ``Retry-After``. Here every REST request costs one token; ``rate`` tokens refill per second up to ``burst``. A
rejected request takes no token. ``retry_after`` chooses what the 429 carries: ``none`` (as documented), ``seconds``
(``Retry-After: N``, whole seconds until a token is back, at least 1) or ``date`` (the same instant as an HTTP
date). Pure logic with an injectable clock; the server asks :meth:`RestLimiter.check` per request.
"""

from __future__ import annotations

import email.utils
import math
from typing import Literal

__all__ = ["RETRY_AFTER_FORMS", "RestLimiter"]

RETRY_AFTER_FORMS = ("none", "seconds", "date")
RetryAfterForm = Literal["none", "seconds", "date"]


class RestLimiter:
    """Per-client token buckets; ``rate`` <= 0 turns the limit off."""

    def __init__(self, rate: float = 0.0, burst: float = 0.0, retry_after: RetryAfterForm = "none") -> None:
        if retry_after not in RETRY_AFTER_FORMS:
            raise ValueError(f"retry_after must be one of {', '.join(RETRY_AFTER_FORMS)}")
        self.rate = rate
        self.burst = burst if burst > 0 else max(1.0, rate)
        self.retry_after = retry_after
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, at)
        self.rejected = 0

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def check(self, client: str, now: float, wall: float) -> dict[str, str] | None:
        """None when the request may go ahead (a token is taken), else the headers of the 429 answer.

        ``now`` is a monotonic clock, ``wall`` the Unix time (for the HTTP-date form)."""
        if self.rate <= 0:
            return None
        tokens, at = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self._buckets[client] = (tokens - 1.0, now)
            return None
        self._buckets[client] = (tokens, now)
        self.rejected += 1
        wait = max(1, math.ceil((1.0 - tokens) / self.rate))
        if self.retry_after == "seconds":
            return {"Retry-After": str(wait)}
        if self.retry_after == "date":
            return {"Retry-After": email.utils.formatdate(math.ceil(wall) + wait, usegmt=True)}
        return {}
