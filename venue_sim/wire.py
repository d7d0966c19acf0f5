"""The format of the emulator's ground truth: the default venue's emulator wire module, looked up once.

The generator (:mod:`venue_sim.load`) writes every event's message body in the default venue's wire format
(:meth:`venues.interface.Venue.emulator_wire` of :func:`venues.default_name`): channel numbers, price and count
spellings, the body of each kind of message and the book level lists the venue's record keeps. The truth file
records those bodies and every venue's emulator profile serves them or translates them. ``WIRE`` is that module;
modules on the hot path copy what they use from it into module globals when imported.
"""

from __future__ import annotations

from types import ModuleType

from venues import default_name, get_venue

__all__ = ["WIRE"]

WIRE: ModuleType = get_venue(default_name()).emulator_wire()
