"""make bench-e2e: the whole pipeline at a fixed rate (latency) and at rising rates (highest sustained)."""
