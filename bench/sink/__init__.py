"""Sink benchmark: Kafka ``events`` -> committed rows, against an in-memory binary COPY baseline."""
