"""Kalshi trade-api v2 adapter: upgrade-header signing (auth), sans-I/O session protocol (protocol)."""
