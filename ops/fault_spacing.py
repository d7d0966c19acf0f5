"""When a run's faults may fire (:mod:`ops.pipeline_run`): faults that blind a gatherer never overlap on one venue.

A run injects faults at fractions of its duration, checked once per progress tick. A tick can take seconds on a busy
machine (it scrapes every stage), so faults planned a second apart can come due in the same tick and fire together.
Faults that blind one gatherer for a while (the venue closes a connection, drops a message, a gatherer is SIGKILLed)
must not overlap on one venue: with two gatherers, a message dropped on one while the other reconnects or dies
reached no live gatherer, and nothing on a wire without sequence numbers reports it (a real double loss, which the
run's verify rightly counts, but not the single fault the plan meant to test). So a blinding fault of a venue fires
only when

- ``spacing_s`` passed since that venue's previous one (what reached a gatherer before it is read and produced),
- the venue's emulator has at least as many open connections as when the previous one fired (a closed connection
  was opened again, a killed gatherer is back), and
- no gatherer of the venue is killed and not yet restarted.

A deferred fault fires at a later tick, in plan order. Faults that blind nobody (re-deliveries, bad numbers) keep
their time. Pure logic: the caller passes the clock and the connection count.
"""

from __future__ import annotations

import math

__all__ = ["BLINDING", "FAULT_SPACING_S", "FaultSpacing"]

# A gatherer reads and produces what reached it within this long on a loaded machine; the next blinding fault of the
# venue waits for it.
FAULT_SPACING_S = 2.0

BLINDING = frozenset({"close", "drop", "kill"})  # emulator fault names, and the run's own SIGKILL of a gatherer


class FaultSpacing:
    """Per venue: when the next blinding fault may fire."""

    def __init__(self, spacing_s: float = FAULT_SPACING_S) -> None:
        self.spacing_s = spacing_s
        self._free_at: dict[str, float] = {}
        self._conns: dict[str, int] = {}  # open connections when the venue's last blinding fault fired
        self._down: set[str] = set()  # venues with a killed gatherer not restarted yet

    def may_blind(self, venue: str, now: float, conns: int) -> bool:
        """May a blinding fault of ``venue`` fire at ``now``, its emulator having ``conns`` open connections?"""
        return (
            venue not in self._down
            and now >= self._free_at.get(venue, -math.inf)
            and conns >= self._conns.get(venue, 0)
        )

    def blinded(self, venue: str, now: float, conns: int, down: bool = False) -> None:
        """A blinding fault of ``venue`` fired at ``now`` with ``conns`` open connections before it (``down``: a
        gatherer was killed, until :meth:`restored`)."""
        self._free_at[venue] = now + self.spacing_s
        self._conns[venue] = conns
        if down:
            self._down.add(venue)

    def restored(self, venue: str, now: float) -> None:
        """The killed gatherer of ``venue`` was started again at ``now``."""
        self._down.discard(venue)
        self._free_at[venue] = max(self._free_at.get(venue, -math.inf), now + self.spacing_s)
