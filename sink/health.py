"""The sink's /healthz rule: the database answers, and no database call has been stuck longer than allowed.

A database host that vanishes without resetting the connection leaves a write waiting on the socket until TCP
gives up (keepalives / tcp_user_timeout, see :mod:`sink.store`); meanwhile the sink loads nothing, so it must
not report healthy.
"""

from __future__ import annotations

__all__ = ["sink_healthy"]


def sink_healthy(db_ok: bool, busy_since: float, now: float, max_busy_s: float) -> bool:
    """``db_ok``: the last database call succeeded (no outage being retried); ``busy_since``: monotonic time the
    call in flight started (0 when none); healthy unless one of them says otherwise."""
    if not db_ok:
        return False
    return busy_since <= 0.0 or now - busy_since <= max_busy_s
