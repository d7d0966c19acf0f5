"""The venue emulator: a local venue serving REST discovery and WebSocket market data, with ground truth and faults.

The machinery here is venue-neutral (server loop, load generator, books, market table, faults, truth and record
files, metrics, TLS); the protocol served is a venue's emulator profile (``venues/<name>/``, looked up by name:
:meth:`venues.interface.Venue.emulator`), and events are generated in the truth format (:mod:`venue_sim.wire`).
Entry points: :class:`venue_sim.app.VenueSim` (in-process API) and ``mdpipe sim`` (:mod:`venue_sim.cli`).
The real venue's awkward behaviours are in :mod:`venue_sim.lifecycle`; what the venue did for each connection
(the record verify judges by) in :mod:`venue_sim.record`.
"""
