"""Local Kalshi trade-api v2 venue: REST discovery + WebSocket market data, ground truth, fault injection.

Entry points: :class:`venue_sim.app.VenueSim` (in-process API) and ``mdpipe sim`` (:mod:`venue_sim.cli`).
The real venue's awkward behaviours are in :mod:`venue_sim.lifecycle`; what the venue did for each connection
(the record verify judges by) in :mod:`venue_sim.record`.
"""
