"""Sink stage: loads the deduplicated ``events`` topic (and ``markets``) into PostgreSQL/TimescaleDB exactly once.

Modules: ``records`` (fast decode of Event/MarketRef), ``pgbinary`` + ``rows`` (binary COPY rows),
``batch`` (records -> rows per table + offsets), ``helper`` (a process building part of the rows), ``flush``
(when a batch goes to the writer), ``migrate`` (versioned schema), ``store`` (one transaction: COPY + offsets),
``loader`` (Kafka consumer loop + writer thread), ``cli`` (``mdpipe sink``).

Speed (``make bench-sink``, 2 cores shared with PostgreSQL and the broker): 105-130K rows/s Kafka -> committed
rows, 0.4-0.6 of a binary COPY of the same rows from memory; the consumer thread's Python (decode + COPY
encoding, ~4-5 us per record) is the limit, overlapped with PostgreSQL by the writer thread; on a host with
spare cores ``sink.helper_share`` moves part of it to a second process.
"""
