"""A dead letter the broker did not store fails its batch's transaction (retried), never passes for delivered.

The sink sends a batch's dead letters inside the batch's transaction and waits for them (sink.dead_letters); a
delivery report with an error, or a success report without an offset (librdkafka's implicit ack, see
mdpipe.kafka.report_stored), must raise there so that rows and offsets are not committed past a dead letter that is
not on its topic. A fake librdkafka producer stands in for the real one and serves reports, as librdkafka does,
through the callback configured (none configured: none served).
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

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
                err = outcome if isinstance(outcome, str) else None
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


def test_a_dead_letter_that_failed_fails_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    sender = _sender(monkeypatch, ["MSG_SIZE_TOO_LARGE", 8])
    with pytest.raises(psycopg.OperationalError, match="MSG_SIZE_TOO_LARGE"):
        sender.send(_dead(2))


def test_stored_dead_letters_pass_and_a_retry_starts_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    sender = _sender(monkeypatch, [None])
    with pytest.raises(psycopg.OperationalError):
        sender.send(_dead(1))
    _FakeProducer.offsets = [7, 8]
    sender.send(_dead(2))  # the retry's reports alone decide
