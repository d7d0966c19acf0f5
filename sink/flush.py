"""When the loader hands its batch to the writer thread, and how long it may wait in consume() (pure, no I/O).

A batch is due at ``batch_rows`` records, or ``batch_ms`` after its first record. While the writer is still
committing the previous batch, a due batch below ``batch_rows`` keeps growing instead of waiting in line: the
records could not reach the database any sooner, and fewer, larger transactions drain a backlog faster
(adaptive batch size, capped at ``batch_rows``). When the topic is quiet the writer is idle and the batch goes
out at ``batch_ms``, as before.
"""

from __future__ import annotations

__all__ = ["BUSY_POLL_S", "flush_due", "poll_timeout"]

BUSY_POLL_S = 0.002  # consume() wait while a due batch waits for the writer: how soon we notice it is free


def flush_due(size: int, age_s: float, batch_rows: int, batch_s: float, writer_idle: bool) -> bool:
    """Hand the batch (``size`` records, first one ``age_s`` ago) to the writer now?"""
    if not size:
        return False
    if size >= batch_rows:
        return True
    return age_s >= batch_s and writer_idle


def poll_timeout(size: int, age_s: float, batch_s: float, max_poll_s: float) -> float:
    """consume()'s timeout: until the batch is due (``batch_s`` for an empty batch), at most ``max_poll_s``;
    once due (and waiting for the writer), a short poll so the batch leaves as soon as the writer is free."""
    if not size:
        return min(batch_s, max_poll_s)
    left = batch_s - age_s
    if left <= 0:
        return BUSY_POLL_S
    return min(left, max_poll_s)
