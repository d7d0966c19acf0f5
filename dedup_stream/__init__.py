"""dedup_stream: first-copy-wins deduplication of the raw.<gatherer> topics into events, sharded by market.

Two engines run the same decision (``logic``): ``native`` (default, a confluent-kafka batch worker) and ``faust``.
"""
