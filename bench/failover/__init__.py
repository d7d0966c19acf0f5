"""make bench-failover: a SIGKILLed dedup worker, then sink, restarted at once during a 10,000 events/s run."""
