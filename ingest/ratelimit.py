"""Pacing of the gatherer's REST requests (pure logic, no I/O): a token bucket as GCRA, plus ``Retry-After``.

:class:`RequestPacer` spaces requests to ``rate`` per second with bursts of at most ``burst`` requests: in any time
window of ``w`` seconds it grants at most ``burst + rate * w`` requests. :meth:`RequestPacer.reserve` books the next
slot and returns how long the caller must wait for it (callers wait in arrival order). :meth:`RequestPacer.hold`
moves every later slot past an instant (the venue said 429: nothing is sent before the pause ends, and traffic
resumes at ``rate``, without a burst).

:func:`retry_after_s` reads an HTTP ``Retry-After`` value: delay-seconds or an HTTP-date (RFC 9110 section 10.2.3).
"""

from __future__ import annotations

import email.utils
import math

__all__ = ["RequestPacer", "retry_after_s"]


class RequestPacer:
    """Generic cell rate algorithm: ``tat`` is the theoretical arrival time of the next request."""

    def __init__(self, rate: float, burst: float = 0.0) -> None:
        if not rate > 0 or math.isinf(rate):
            raise ValueError(f"rate must be > 0 requests/s, got {rate}")
        self.rate = rate
        self.burst = max(1.0, burst if burst > 0 else rate)
        self.interval = 1.0 / rate
        self.tolerance = (self.burst - 1.0) * self.interval
        self.tat = -math.inf
        self.held_until = -math.inf

    def reserve(self, now: float) -> float:
        """Book the next slot for a request ready at ``now``; returns the seconds to wait before sending it."""
        tat = max(self.tat, now)
        start = max(now, tat - self.tolerance)
        self.tat = tat + self.interval
        wait = start - now
        return wait if wait > 1e-9 else 0.0  # float residue of tat - tolerance is no wait

    def hold(self, until: float) -> None:
        """No request before ``until`` (a 429's pause); requests booked later start at ``until``, then at rate."""
        if until > self.held_until:
            self.held_until = until
        self.tat = max(self.tat, until + self.tolerance)

    def held(self, now: float) -> float:
        """Seconds left of the current hold (0 when none)."""
        return max(0.0, self.held_until - now)


def retry_after_s(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header at Unix time ``now``: delay-seconds (``"120"``) or an
    HTTP-date (``"Wed, 21 Oct 2026 07:28:00 GMT"``, at least 0). None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)
