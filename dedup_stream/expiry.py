"""Raw records that retention deleted before the dedup worker read them: detected, logged and counted, never silent.

The native worker reads the raw topics with ``auto.offset.reset=earliest``. When the broker's retention deleted raw
records the group had not read (its committed offset, or a running worker's fetch position, is below the
partition's log start), librdkafka goes on from the oldest record left and tells the application nothing but one
``OFFSET`` warning on the client's log (``<topic> [<p>]: offset reset (at offset N ...) to ...``): it reports
``KafkaError._AUTO_OFFSET_RESET`` as a consumer error only with ``auto.offset.reset=error``. Two checks therefore:

- at assignment, :func:`expired_unread` on the group's committed offset and the partition's low watermark;
- while running, :class:`ResetWatch`, the consumer's ``logger``, which passes every client line on and keeps the
  offset resets (:func:`parse_offset_reset`) for the worker's loop to report.

:class:`ExpiredCounts` holds the counters the worker exports (:mod:`dedup_stream.metrics`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mdpipe.kafka import expired_unread

__all__ = ["ExpiredCounts", "OffsetReset", "ResetWatch", "expired_unread", "parse_offset_reset"]


@dataclass(frozen=True, slots=True)
class OffsetReset:
    """One fetch position librdkafka reset: from offset ``at`` (None: a logical offset) to ``to`` (None: the log start
    it asked the broker for, not named in its line). The records it skipped are ``expired_unread(at, to)``."""

    topic: str
    partition: int
    at: int | None
    to: int | None
    reason: str


# "raw.g1 [0]: offset reset (at offset <n> (leader epoch <e>), broker <b>) to offset BEGINNING (leader epoch <e>):
# <reason>: <error>", or "... to cached BEGINNING offset offset <n> (...): ..." when librdkafka knows the log start
# from its last fetch response (rd_kafka_offset_reset)
_RESET = re.compile(
    r"^(?:\[thrd:[^\]]*\]: )?(?P<topic>\S+) \[(?P<partition>\d+)\]: offset reset \(at (?P<at>[^,]*), broker [^)]*\) "
    r"to (?P<to>.*?): (?P<reason>.*)$"
)
_OFFSET = re.compile(r"offset (-?\d+)")


def _offset(text: str) -> int | None:
    found = _OFFSET.search(text)
    return int(found.group(1)) if found is not None and int(found.group(1)) >= 0 else None


def parse_offset_reset(facility: str, text: str) -> OffsetReset | None:
    """The reset one librdkafka log line reports (facility ``OFFSET``), or None for any other line."""
    if facility != "OFFSET":
        return None
    found = _RESET.match(text)
    if found is None:
        return None
    return OffsetReset(
        topic=found.group("topic"),
        partition=int(found.group("partition")),
        at=_offset(found.group("at")),
        to=_offset(found.group("to")),
        reason=found.group("reason"),
    )


class ResetWatch:
    """A consumer's ``logger``: hands every librdkafka line to ``logger`` unchanged and keeps, in :attr:`resets`,
    each offset reset reported at warning level (a reset after a fetch error; a logical start is debug-level).
    confluent-kafka calls it from the thread that polls the consumer, so the loop reads :attr:`resets` safely."""

    def __init__(self, logger: Any, topics: frozenset[str]) -> None:
        self.logger = logger
        self.topics = topics
        self.resets: list[OffsetReset] = []

    def log(self, level: int, msg: str, *args: Any, **kwargs: Any) -> None:
        if level >= logging.WARNING and len(args) == 3:
            reset = parse_offset_reset(str(args[0]), str(args[2]))
            if reset is not None and reset.topic in self.topics:
                self.resets.append(reset)
        self.logger.log(level, msg, *args, **kwargs)

    def take(self) -> list[OffsetReset]:
        """The resets seen since the last call."""
        taken, self.resets = self.resets, []
        return taken


class ExpiredCounts:
    """Per raw topic: records known to have expired unread, and fetch positions librdkafka reset. Every topic given
    starts at 0, so that a first loss is an increase of a series Prometheus already has."""

    def __init__(self, topics: Iterable[str] = ()) -> None:
        self.records: dict[str, int] = dict.fromkeys(topics, 0)
        self.resets: dict[str, int] = dict.fromkeys(self.records, 0)

    def add_records(self, topic: str, records: int) -> None:
        self.records[topic] = self.records.get(topic, 0) + records

    def add_reset(self, topic: str) -> None:
        self.resets[topic] = self.resets.get(topic, 0) + 1
