"""The dedup worker's output treats a success report without an offset as a failure (nothing committed past it).

librdkafka reports an "implicitly acked" record as delivered without an offset: a new idempotent producer's request
to a partition failed (NOT_LEADER_FOR_PARTITION) while its next request there succeeded, and the record was never
stored (see ingest.producer). An event has no second copy past dedup, so the worker must not commit past it: it exits
and its restart re-decides and re-emits. These tests stand a fake librdkafka producer in for the real one; the fake
serves reports as librdkafka does, success reports included only when ``delivery.report.only.error`` is off.
"""

from __future__ import annotations

from typing import Any

import pytest

from dedup_stream import native_output
from dedup_stream.native_output import NativeOutput


class _Report:
    def __init__(self, topic: str, partition: int, offset: int | None) -> None:
        self._topic, self._partition, self._offset = topic, partition, offset

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int | None:
        return self._offset


class _FakeProducer:
    """Queues records; ``poll`` serves one report per record with the next offset of ``offsets`` (None: no offset)."""

    def __init__(self, conf: dict[str, Any]) -> None:
        self.on_delivery = conf["on_delivery"]
        self.only_errors = bool(conf.get("delivery.report.only.error"))
        self.pending: list[tuple[str, int]] = []
        self.offsets: list[int | None] = []

    def produce(self, topic: str, value: bytes, key: bytes | None = None, partition: int = -1) -> None:
        self.pending.append((topic, max(partition, 0)))

    def poll(self, timeout: float | None = None) -> int:
        served = 0
        while self.pending and self.offsets:
            topic, partition = self.pending.pop(0)
            offset = self.offsets.pop(0)
            if not self.only_errors:
                self.on_delivery(None, _Report(topic, partition, offset))
            served += 1
        return served

    def flush(self, timeout: float | None = None) -> int:
        self.poll(0)
        return len(self.pending)

    def __len__(self) -> int:
        return len(self.pending)


@pytest.fixture
def output(monkeypatch: pytest.MonkeyPatch) -> NativeOutput:
    monkeypatch.setattr(native_output, "Producer", _FakeProducer)
    return NativeOutput({"bootstrap.servers": "127.0.0.1:1"}, "app-seen-changelog")


def test_an_event_acknowledged_without_an_offset_is_a_failure(output: NativeOutput) -> None:
    main: Any = output.main
    for n in range(3):
        output.produce("events", b"k%d" % n, b"v%d" % n, partition=n)
    main.offsets = [10, None, 11]
    assert output.events_unacked() == 0
    assert output.first_error is not None and "without an offset" in output.first_error
    assert output.failures == 1 and output.unconfirmed == 1
    assert output.flush(1.0) is not None, "the worker must exit without committing"


def test_a_changelog_record_acknowledged_without_an_offset_is_not_counted_acknowledged(output: NativeOutput) -> None:
    changelog: Any = output.changelog
    output.put_changelog(0, [(b"k", b"v")])
    output.put_changelog(0, [(b"k2", b"v2")])
    mark = output.changelog_mark()
    changelog.offsets = [5, None]
    output.poll()
    assert not output.changelog_acked(mark), "the second batch's events must stay held"
    assert output.delivered == {0: 5}
    assert output.first_error is not None and output.unconfirmed == 1


def test_stored_records_report_no_failure(output: NativeOutput) -> None:
    main: Any = output.main
    changelog: Any = output.changelog
    output.produce("events", b"k", b"v", partition=1)
    output.put_changelog(2, [(b"k", b"v")])
    main.offsets, changelog.offsets = [0], [7]
    mark = output.changelog_mark()
    output.poll()
    assert output.events_unacked() == 0 and output.changelog_acked(mark)
    assert output.first_error is None and output.flush(1.0) is None
