"""ingest: the all-market gatherer (venue WebSockets -> ``raw.<gatherer>`` Kafka topic, losing nothing)."""
