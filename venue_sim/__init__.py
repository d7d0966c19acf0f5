"""Local Kalshi trade-api v2 venue: REST discovery + WebSocket market data, ground truth, fault injection.

Entry points: :class:`venue_sim.app.VenueSim` (in-process API) and ``mdpipe sim`` (:mod:`venue_sim.cli`).
"""
