"""The sink's dead-letter output: rows the database refused go to the dead-letter topic, inside their batch's
transaction.

:meth:`DeadLetters.send` produces a batch's dead letters and waits for their delivery reports before the batch commits
(:meth:`sink.store.Store.write` calls it in the transaction). A dead letter not proven stored raises
:class:`psycopg.OperationalError`, so the transaction rolls back and the batch is retried like a database outage:
a delivery error, a flush that times out, or a success report without an offset (librdkafka's implicit ack,
:func:`mdpipe.kafka.report_stored`). Rows and offsets are therefore never committed past a dead letter that is not on
its topic; a retry may send a dead letter twice.
"""

from __future__ import annotations

from typing import Any

import psycopg
from confluent_kafka import KafkaError, Producer

from mdpipe.kafka import report_stored
from mdpipe.logging import get_logger
from schemas import DeadLetter, encode_dead_letter

__all__ = ["DeadLetters"]

log = get_logger(__name__)


class DeadLetters:
    """One librdkafka producer (``producer_conf``) for the dead-letter topic ``topic``."""

    def __init__(self, producer_conf: dict[str, Any], topic: str) -> None:
        self.topic = topic
        self._unstored: list[str] = []  # reports of the current send that do not prove a dead letter stored
        self.producer = Producer({**producer_conf, "on_delivery": self._on_report})

    def _on_report(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None or not report_stored(msg):
            self._unstored.append(str(err) if err is not None else "acknowledged without an offset (implicit ack)")

    def send(self, dead: list[DeadLetter], timeout_s: float = 30.0) -> None:
        """Produce ``dead`` and wait until each is stored; raise (the caller's transaction rolls back) otherwise."""
        self._unstored.clear()
        for d in dead:
            self.producer.produce(self.topic, value=encode_dead_letter(d))
            log.warning(
                "dead_letter",
                reason=d.reason[:300],
                topic=d.source_topic,
                partition=d.source_partition,
                offset=d.source_offset,
            )
        if self.producer.flush(timeout_s) != 0:
            raise psycopg.OperationalError(f"dlq producer could not deliver within {timeout_s:g} s")
        if self._unstored:
            raise psycopg.OperationalError(
                f"dlq producer: {len(self._unstored)} dead letters not stored ({self._unstored[0]})"
            )

    def flush(self, timeout_s: float) -> int:
        return self.producer.flush(timeout_s)
