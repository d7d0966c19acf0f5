"""A dead letter the broker did not store fails its batch's transaction (retried), never passes for delivered.

The sink sends a batch's dead letters inside the batch's transaction and waits for them (sink.dead_letters); a
delivery report with an error, or a success report without an offset (librdkafka's implicit ack, see
mdpipe.kafka.report_stored), must raise there so that rows and offsets are not committed past a dead letter that is
not on its topic. A fake librdkafka producer stands in for the real one and serves reports, as librdkafka does,
through the callback configured (none configured: none served).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest
from confluent_kafka import KafkaError

from mdpipe.failures import Misconfigured
from mdpipe.kafka import TRANSIENT_PRODUCE_ERRORS
from schemas import DeadLetter
from sink import dead_letters as module
from sink.dead_letters import DeadLetters


class _Report:
    def __init__(self, offset: int | None) -> None:
        self._offset = offset

    def offset(self) -> int | None:
        return self._offset


class _FakeProducer:
    """Serves one report per record at flush, with the next of ``offsets`` (None: no offset), or an error."""

    offsets: list[int | str | None] = []

    def __init__(self, conf: dict[str, Any]) -> None:
        self.on_delivery = conf.get("on_delivery")
        self.pending = 0

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> None:
        self.pending += 1

    def flush(self, timeout: float | None = None) -> int:
        for outcome in self.offsets[: self.pending]:
            if self.on_delivery is not None:
                err = outcome if isinstance(outcome, KafkaError) else None
                self.on_delivery(err, _Report(None if err else outcome))  # type: ignore[arg-type]
        self.pending = 0
        return 0


def _sender(monkeypatch: pytest.MonkeyPatch, offsets: list[int | str | None]) -> DeadLetters:
    monkeypatch.setattr(module, "Producer", _FakeProducer)
    _FakeProducer.offsets = offsets
    return DeadLetters({"bootstrap.servers": "127.0.0.1:9"}, "dlq")


def _dead(n: int) -> list[DeadLetter]:
    return [DeadLetter(stage="sink", reason="rejected", payload=b"x", source_offset=i) for i in range(n)]


def test_a_dead_letter_acknowledged_without_an_offset_fails_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    sender = _sender(monkeypatch, [7, None])
    with pytest.raises(psycopg.OperationalError, match="not stored"):
        sender.send(_dead(2))


def test_a_dead_letter_refused_for_good_stops_the_sink_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    sender = _sender(monkeypatch, [KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), 8])
    with pytest.raises(Misconfigured, match="refused a record"):
        sender.send(_dead(2))


@pytest.mark.parametrize(
    "code", sorted(TRANSIENT_PRODUCE_ERRORS), ids=lambda c: KafkaError(c).name()
)  # pinned in test_kafka
def test_a_dead_letter_that_may_pass_later_fails_the_batch_for_a_retry(
    monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    sender = _sender(monkeypatch, [KafkaError(code), 8])
    with pytest.raises(psycopg.OperationalError, match="not stored"):
        sender.send(_dead(2))


def test_a_dead_letter_without_any_report_fails_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    sender = _sender(monkeypatch, [5])  # the second one's report never came
    with pytest.raises(psycopg.OperationalError, match="1 not reported stored"):
        sender.send(_dead(2))


def test_concurrent_sends_each_wait_for_their_own_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer threads share the sender: one send's failure must not be wiped by another's start."""
    sender = _sender(monkeypatch, [None])
    started, proceed, errors = threading.Event(), threading.Event(), []
    real_flush = sender.producer.flush

    def slow_flush(timeout: float | None = None) -> int:
        if started.is_set():
            return real_flush(timeout)  # the second send's
        left = real_flush(timeout)  # the first send's report is served ...
        started.set()
        proceed.wait(5)  # ... and the other lane starts a send before the first looks at it
        return left

    sender.producer.flush = slow_flush  # type: ignore[method-assign]

    def first() -> None:
        try:
            sender.send(_dead(1))
        except psycopg.OperationalError as exc:
            errors.append(exc)

    a = threading.Thread(target=first)
    a.start()
    started.wait(5)
    b = threading.Thread(target=lambda: sender.send([]))  # another lane's batch with no dead letter
    b.start()
    time.sleep(0.2)  # the second send runs as far as it can (with the lock: to the lock)
    proceed.set()
    a.join(5)
    b.join(5)
    assert errors, "the first send's unstored dead letter was hidden by the second send"


def test_stored_dead_letters_pass_and_a_retry_starts_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    sender = _sender(monkeypatch, [None])
    with pytest.raises(psycopg.OperationalError):
        sender.send(_dead(1))
    _FakeProducer.offsets = [7, 8]
    sender.send(_dead(2))  # the retry's reports alone decide
