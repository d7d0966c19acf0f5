"""Sink stage: loads the deduplicated ``events`` topic (and ``markets``) into PostgreSQL/TimescaleDB exactly once.

Modules: ``records`` (fast decode of Event/MarketRef), ``pgbinary`` + ``rows`` (binary COPY rows),
``migrate`` (versioned schema), ``store`` (one transaction: COPY + offsets), ``loader`` (Kafka consumer loop),
``cli`` (``mdpipe sink``).
"""
