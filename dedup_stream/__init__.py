"""dedup_stream: first-copy-wins deduplication of the raw.<gatherer> topics into events (Faust, sharded by market)."""
