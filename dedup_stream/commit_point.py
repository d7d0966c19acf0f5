"""The native dedup worker's interval commit without stopping its loop: the bookkeeping of one commit point.

An interval commit (dedup.commit_interval_s / commit_every) may name a raw frame only once that frame's output is
acknowledged by the broker: its batch's changelog records and its events. Waiting for that with a flush of both
producers stops the loop for up to two acknowledgement round trips (then a commit round trip) each interval: nothing
at all on a broker that acknowledges at once, but on one that acknowledges slowly (a freshly started broker, for its
first minute or so) the worker read only between commits and fell behind, the start-up backlog of bench-failover.

Instead the worker takes a *commit point*: the positions processed so far, the changelog records queued so far, and how
many of the batches held for their changelog acknowledgement (:mod:`dedup_stream.native`) came before the point. The
loop reads and decides on; those earlier batches' events go out as usual, and the events of later batches are held
until the events producer has nothing unacknowledged left, which then covers every event before the point (its
reports are served by then, and any that did not prove a record stored -- a failure, or a success without an offset --
has stopped the worker before the commit: :mod:`dedup_stream.native_output`). The offsets are then
committed asynchronously; a commit that fails is merged back into the positions unless a newer one superseded it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CommitPoint", "merge_back"]

Positions = dict[tuple[str, int], int]  # (raw topic, partition) -> last offset processed


@dataclass(slots=True)
class CommitPoint:
    """What one interval commit waits for before it names ``offsets`` (each the last offset processed)."""

    offsets: Positions
    changelog_mark: dict[int, int]  # changelog records queued per partition when the point was taken
    held_before: int  # held batches taken before the point whose events have not gone to the producer yet

    def released(self) -> None:
        """One held batch left for the producer (the oldest first: those before the point go first)."""
        if self.held_before:
            self.held_before -= 1

    def admits_events(self) -> bool:
        """True while batches before the point are still to go out; later batches wait for the point's commit."""
        return self.held_before > 0

    def ready(self, changelog_acked: bool, events_unacked: int) -> bool:
        """Every record before the point is acknowledged: the offsets may be committed."""
        return self.held_before == 0 and changelog_acked and events_unacked == 0


def merge_back(positions: Positions, failed: Positions, issued: Positions) -> list[tuple[str, int]]:
    """Put the offsets of a failed commit back into ``positions`` (the next commit carries them) where neither a
    newer position nor a newer commit (``issued``: the last offset sent per partition) superseded them; returns the
    partitions merged back."""
    merged = []
    for tp, offset in failed.items():
        if issued.get(tp, -1) == offset and tp not in positions:
            positions[tp] = offset
            merged.append(tp)
    return merged
