"""The sink's dead-letter output: rows the database refused go to the dead-letter topic, inside their batch's
transaction.

:meth:`DeadLetters.send` produces a batch's dead letters and waits for their delivery reports before the batch commits
(:meth:`sink.store.Store.write` calls it in the transaction). Unless every one of them is reported stored (a report
with an offset), it raises, and the transaction rolls back: rows and offsets are never committed past a dead letter
that is not on its topic.

- A failure that a retry may fix (a retriable or transient delivery error, a flush that times out, a success report
  without an offset: librdkafka's implicit ack, :func:`mdpipe.kafka.report_stored`) raises
  :class:`psycopg.OperationalError`: the batch is retried like a database outage (a retry may send a dead letter
  twice).
- A failure that retrying cannot fix (record too large, topic missing, not authorised) raises
  :class:`mdpipe.failures.Misconfigured`: the sink stops with one line naming it, instead of retrying for ever.

The sink's writer threads share one instance; a lock makes each ``send`` wait for its own reports alone (dead letters
are rare, so the lock costs nothing on the normal path).
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg
from confluent_kafka import KafkaError, Producer

from mdpipe.failures import Misconfigured
from mdpipe.kafka import TRANSIENT_PRODUCE_ERRORS, report_stored
from mdpipe.logging import get_logger
from schemas import DeadLetter, encode_dead_letter

__all__ = ["DeadLetters"]

log = get_logger(__name__)


class DeadLetters:
    """One librdkafka producer (``producer_conf``) for the dead-letter topic ``topic``."""

    def __init__(self, producer_conf: dict[str, Any], topic: str) -> None:
        self.topic = topic
        self._lock = threading.Lock()
        self._stored = 0  # reports of the current send that carry an offset
        self._transient: list[str] = []  # reports of the current send that a retry may fix
        self._permanent: list[str] = []  # ... and those it cannot
        self.producer = Producer({**producer_conf, "on_delivery": self._on_report})

    def _on_report(self, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            if report_stored(msg):
                self._stored += 1
            else:
                self._transient.append("acknowledged without an offset (implicit ack)")
        elif err.retriable() or err.code() in TRANSIENT_PRODUCE_ERRORS:
            self._transient.append(str(err))
        else:
            self._permanent.append(str(err))

    def send(self, dead: list[DeadLetter], timeout_s: float = 30.0) -> None:
        """Produce ``dead`` and wait until each is stored; raise (the caller's transaction rolls back) otherwise."""
        with self._lock:
            self._stored = 0
            self._transient.clear()
            self._permanent.clear()
            for d in dead:
                self.producer.produce(self.topic, value=encode_dead_letter(d))
                log.warning(
                    "dead_letter",
                    reason=d.reason[:300],
                    topic=d.source_topic,
                    partition=d.source_partition,
                    offset=d.source_offset,
                )
            left = self.producer.flush(timeout_s)
            if self._permanent:
                raise Misconfigured(
                    f"the dead-letter topic {self.topic} refused a record",
                    self._permanent[0],
                    "that the topic exists, its max.message.bytes and the sink's write permission on it",
                )
            if left or self._transient or self._stored < len(dead):
                why = self._transient[0] if self._transient else f"{len(dead) - self._stored} not reported stored"
                log.warning("dead_letter_unstored", dead_letters=len(dead), stored=self._stored, error=why[:300])
                raise psycopg.OperationalError(f"dlq producer: dead letters not stored within {timeout_s:g} s ({why})")

    def flush(self, timeout_s: float) -> int:
        return self.producer.flush(timeout_s)
