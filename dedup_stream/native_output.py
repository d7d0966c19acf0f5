"""Output of the native dedup worker: events + dead letters through one confluent-kafka producer, state
changelog records through another, and the delivery bookkeeping the commit protocol needs.

Both producers are idempotent with ``acks=all`` and report every record. A success report without an offset (an
"implicit ack", :func:`mdpipe.kafka.report_stored`: librdkafka's word that a record it never saw stored was
delivered, on a new producer's first writes to a partition whose leader was not ready) is a failure like any other:
an event has no second copy past dedup, so the worker exits without committing past it and its restart re-emits it.
(The events producer used to report failures only, which hid such a report: the record counted as acknowledged.)
From the changelog producer's reports the worker learns the last changelog offset acknowledged per partition (stored
in the partition's DB so that a restore starts there) and counts records queued and acknowledged per partition (one
batch record per consumed batch and partition, :mod:`dedup_stream.changelog_format`: one callback per batch, not
per winner) so that it can hold a batch's events until that batch's changelog records are acknowledged
(:meth:`NativeOutput.changelog_mark`, :meth:`NativeOutput.changelog_acked`: librdkafka reports an idempotent
producer's records of one partition in order).
:meth:`NativeOutput.flush` waits for every outstanding record and returns the first failure, if any: the worker then
exits without committing.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from dedup_stream.changelog_format import MAX_PAIRS, BatchKeys, encode_batch
from mdpipe.kafka import report_stored
from mdpipe.logging import get_logger, log_client_error

__all__ = ["NativeOutput"]

log = get_logger(__name__)


class NativeOutput:
    """Two producers sharing ``producer_conf`` (librdkafka keys); ``changelog_topic`` gets offsets reported."""

    def __init__(self, producer_conf: dict[str, Any], changelog_topic: str) -> None:
        self.changelog_topic = changelog_topic
        self.failures = 0
        self.unconfirmed = 0  # success reports without an offset (counted in failures too)
        self.first_error: str | None = None
        self.delivered: dict[int, int] = {}  # changelog partition -> highest acknowledged offset
        self.queued: dict[int, int] = {}  # changelog partition -> records queued so far
        self.acked: dict[int, int] = {}  # changelog partition -> records acknowledged so far
        self.batch_keys = BatchKeys()
        base = {"enable.idempotence": True, "acks": "all", **producer_conf, "error_cb": self._on_client_error}
        self.main = Producer({**base, "on_delivery": self._on_event})
        self.changelog = Producer({**base, "on_delivery": self._on_changelog})

    def _record_failure(self, error: str) -> None:
        self.failures += 1
        if self.first_error is None:
            self.first_error = error

    def _failed(self, err: KafkaError | None, msg: Message) -> bool:
        """Record a delivery report that does not prove the record stored; True when it was one."""
        if err is not None:
            self._record_failure(f"{msg.topic()}[{msg.partition()}]: {err}")
            return True
        if report_stored(msg):
            return False
        self.unconfirmed += 1
        self._record_failure(f"{msg.topic()}[{msg.partition()}]: acknowledged without an offset (implicit ack)")
        log.error("delivery_unconfirmed", topic=msg.topic(), partition=msg.partition())
        return True

    def _on_event(self, err: KafkaError | None, msg: Message) -> None:
        offset = msg.offset()
        if err is not None or offset is None or offset < 0:  # inline: one call per event on the hot path
            self._failed(err, msg)

    def _on_changelog(self, err: KafkaError | None, msg: Message) -> None:
        if self._failed(err, msg):
            return
        partition, offset = msg.partition(), msg.offset()
        self.acked[partition] = self.acked.get(partition, 0) + 1
        if offset > self.delivered.get(partition, -1):
            self.delivered[partition] = offset

    def _on_client_error(self, err: KafkaError) -> None:
        if err.fatal():  # e.g. the idempotent producer lost its sequence: nothing more can be delivered in order
            self._record_failure(f"fatal producer error: {err}")
        else:
            log_client_error(log, "producer_error", err)  # rate-limited: an outage repeats it every ~100 ms

    def produce(self, topic: str, key: bytes | None, value: bytes, partition: int = -1) -> None:
        """Queue one record on the events/DLQ producer (waits for queue space when librdkafka's queue is full)."""
        while True:
            try:
                self.main.produce(topic, value, key, partition)
                return
            except BufferError:
                self.main.poll(0.05)

    def put_changelog(self, partition: int, records: list[tuple[bytes, bytes]]) -> None:
        """Queue the state writes ``(key, value)`` of one batch for ``partition`` as batch records of up to
        :data:`~dedup_stream.changelog_format.MAX_PAIRS` pairs each (:mod:`dedup_stream.changelog_format`; counted:
        see :meth:`changelog_mark`)."""
        produce = self.changelog.produce
        topic = self.changelog_topic
        chunks = 0
        for start in range(0, len(records), MAX_PAIRS):
            key, value = self.batch_keys.next(), encode_batch(records[start : start + MAX_PAIRS])
            chunks += 1
            try:
                produce(topic, value, key, partition)
            except BufferError:
                while True:
                    self.changelog.poll(0.05)
                    try:
                        produce(topic, value, key, partition)
                        break
                    except BufferError:
                        continue
        self.queued[partition] = self.queued.get(partition, 0) + chunks

    def changelog_mark(self) -> dict[int, int]:
        """The changelog records queued so far, per partition: acknowledged once :meth:`changelog_acked` says so."""
        return dict(self.queued)

    def changelog_acked(self, mark: dict[int, int]) -> bool:
        """True when every changelog record queued before ``mark`` was taken is acknowledged."""
        acked = self.acked
        return all(acked.get(partition, 0) >= count for partition, count in mark.items())

    def poll(self) -> None:
        """Serve delivery reports without waiting (call once per consumed batch)."""
        self.main.poll(0)
        self.changelog.poll(0)

    def events_unacked(self) -> int:
        """Records of the events/DLQ producer not acknowledged yet (delivery reports served first): 0 means every one
        produced so far is acknowledged, or failed and recorded in :attr:`first_error`."""
        self.main.poll(0)
        return len(self.main)

    def flush(self, timeout_s: float) -> str | None:
        """Wait until every queued record is acknowledged or failed; return the first failure, else None."""
        try:
            left = self.main.flush(timeout_s) + self.changelog.flush(timeout_s)
        except KafkaException as exc:
            self._record_failure(str(exc))
            left = 0
        if left:
            self._record_failure(f"{left} records still undelivered after {timeout_s}s")
        return self.first_error
