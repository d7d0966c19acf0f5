"""When the loader hands its batch to the writer thread, and how long it may wait for records (pure, no I/O).

A batch is due at ``batch_rows`` records, or when its first record arrives if the lane's commits allow it: batches
that go by time commit at most once per ``batch_ms`` on average per lane, with a burst of two allowed (a token bucket:
:func:`opened_at`, :func:`next_commit_slot`), so a batch waits at most ``batch_ms`` after its first record. A full
batch goes at once and banks no wait for the batches after it (the bucket never runs more than two commits ahead). At a
paced rate records come with each fetch response (about every ``sink.fetch_wait_max_ms``) and go at once; they used
to wait, besides, for the end of a consume window of ``batch_ms`` that began before they arrived (half a window on
average). The burst of two keeps a stray batch (the tail of a fetch response, a batch held back while the writer was
busy) from delaying the batches after it: with a strict minimum interval every later arrival would wait for the
stray batch's interval to end, one after the other.

While the writer is still committing the previous batch, a due batch below ``batch_rows`` keeps growing instead of
waiting in line: the records could not reach the database any sooner, and fewer, larger transactions drain a backlog
faster (adaptive batch size, capped at ``batch_rows``).

With several writer lanes (``sink.writers``), batches that are due by time while every writer is idle (a paced
topic, not a backlog) go out together, as ONE transaction (:func:`merge_due`): lanes exist to ingest a backlog on
several connections at once; at a moderate rate they only multiplied the transactions (COPY statements, commits,
WAL flushes) per ``batch_ms``, and concurrent small COPYs into the same tables cost PostgreSQL more CPU and the
records more latency than one.
"""

from __future__ import annotations

__all__ = ["ARRIVAL_GRACE_S", "BUSY_POLL_S", "flush_due", "merge_due", "next_commit_slot", "opened_at", "poll_timeout"]

BUSY_POLL_S = 0.002  # consume() wait while a due batch waits for the writer: how soon we notice it is free
# After the first record of an empty batch arrives, how long consume() may still collect: librdkafka hands a fetch
# response over one partition at a time, so the first partition wakes the loader while the next ones are being parsed;
# without the grace they would miss this batch and make one of their own (one more transaction).
ARRIVAL_GRACE_S = 0.002


def opened_at(arrived: float, slot: float, batch_s: float) -> float:
    """When an empty batch whose first records arrived at ``arrived`` opened, i.e. the time from which ``batch_s``
    counts (monotonic seconds): it is due at ``arrived``, or later if the lane's commits are ahead of their rate
    (``slot``: :func:`next_commit_slot` after the lane's last commit), at ``slot - batch_s``."""
    return max(arrived, slot - batch_s) - batch_s


def next_commit_slot(slot: float, now: float, batch_s: float) -> float:
    """The lane's commit slot after a batch went at ``now`` (the theoretical arrival time of a generic cell rate
    algorithm: one commit per ``batch_s``, bursts of two; ``-inf`` before the first commit). Capped at two commits
    ahead of ``now``: full batches, which go whatever the rate, must not make the next batch wait more than
    ``batch_s``."""
    return min(max(slot, now) + batch_s, now + 2 * batch_s)


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
    """How long the loader may wait for records (``poll()`` for an empty batch, ``consume()`` for a pending one):
    until the batch is due, at most ``max_poll_s`` (for an empty batch ``max_poll_s``: the wait for a first record
    returns when it arrives); once due (and waiting for the writer), a short poll so the batch leaves as soon as the
    writer is free."""
    if not size:
        return max_poll_s
    left = batch_s - age_s
    if left <= 0:
        return BUSY_POLL_S
    return min(left, max_poll_s)
