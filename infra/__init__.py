"""Local infrastructure: native Apache Kafka (KRaft) and PostgreSQL launchers, compose file, configs."""
