"""Benchmark of the venue emulator: 1M markets, 20K events/s, several all-market WebSocket readers."""
