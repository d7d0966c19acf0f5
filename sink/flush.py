"""When the loader hands its batch to the writer thread, and how long it may wait in consume() (pure, no I/O).

A batch is due at ``batch_rows`` records, or ``batch_ms`` after its first record. While the writer is still
committing the previous batch, a due batch below ``batch_rows`` keeps growing instead of waiting in line: the
records could not reach the database any sooner, and fewer, larger transactions drain a backlog faster
(adaptive batch size, capped at ``batch_rows``). When the topic is quiet the writer is idle and the batch goes
out at ``batch_ms``, as before.

With several writer lanes (``sink.writers``), batches that are due by time while every writer is idle (a paced
topic, not a backlog) go out together, as ONE transaction (:func:`merge_due`): lanes exist to ingest a backlog on
several connections at once; at a moderate rate they only multiplied the transactions (COPY statements, commits,
WAL flushes) per ``batch_ms``, and concurrent small COPYs into the same tables cost PostgreSQL more CPU and the
records more latency than one.
"""

from __future__ import annotations

__all__ = ["BUSY_POLL_S", "flush_due", "merge_due", "poll_timeout"]

BUSY_POLL_S = 0.002  # consume() wait while a due batch waits for the writer: how soon we notice it is free


def flush_due(size: int, age_s: float, batch_rows: int, batch_s: float, writer_idle: bool) -> bool:
    """Hand the batch (``size`` records, first one ``age_s`` ago) to the writer now?"""
    if not size:
        return False
    if size >= batch_rows:
        return True
    return age_s >= batch_s and writer_idle


def merge_due(sizes: list[int], ages_s: list[float], batch_rows: int, batch_s: float, all_idle: bool) -> bool:
    """Hand every lane's batch (``sizes``, first records ``ages_s`` ago) to one writer as one transaction now? When
    every writer is idle, one batch is due by time and none by size (a full batch goes alone, in parallel)."""
    if len(sizes) < 2 or not all_idle or any(n >= batch_rows for n in sizes):
        return False
    return any(n and age >= batch_s for n, age in zip(sizes, ages_s, strict=True))


def poll_timeout(size: int, age_s: float, batch_s: float, max_poll_s: float) -> float:
    """consume()'s timeout: until the batch is due (``batch_s`` for an empty batch), at most ``max_poll_s``;
    once due (and waiting for the writer), a short poll so the batch leaves as soon as the writer is free."""
    if not size:
        return min(batch_s, max_poll_s)
    left = batch_s - age_s
    if left <= 0:
        return BUSY_POLL_S
    return min(left, max_poll_s)
