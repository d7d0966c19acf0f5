"""``create_test_topics`` (the ``make_topics`` fixture's helper) against an admin client whose metadata lags its
CreateTopics replies, as a KRaft broker's does under load: pure, no broker."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import create_test_topics


class _Done:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def result(self) -> None:
        if self.error is not None:
            raise self.error


class _Topic:
    def __init__(self, partitions: int, error: object = None) -> None:
        self.partitions = dict.fromkeys(range(partitions))
        self.error = error


class _Meta:
    def __init__(self, topics: dict[str, _Topic]) -> None:
        self.topics = topics


class _LaggingAdmin:
    """Says every topic exists already; its metadata shows nothing, then the topic without leaders (an error),
    then the topic, one answer a ``list_topics`` call."""

    def __init__(self, answers: list[_Topic | None]) -> None:
        self.answers = answers
        self.calls = 0

    def create_topics(self, new: list[Any], **_: Any) -> dict[str, _Done]:
        return {t.topic: _Done(RuntimeError("TOPIC_ALREADY_EXISTS")) for t in new}

    def list_topics(self, topic: str, timeout: float) -> _Meta:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return _Meta({} if answer is None else {topic: answer})


def test_a_topic_created_by_another_call_is_waited_for_until_the_metadata_shows_it() -> None:
    admin = _LaggingAdmin([None, _Topic(0, error="LEADER_NOT_AVAILABLE"), _Topic(3)])
    assert create_test_topics(admin, ["t"], 3) == []  # existing with the asked count: accepted, not "created"
    assert admin.calls == 3


def test_an_existing_topic_with_another_partition_count_is_refused_at_once() -> None:
    admin = _LaggingAdmin([_Topic(6)])
    with pytest.raises(RuntimeError, match=r"cannot create topic t with 3 partitions \(6 found\)"):
        create_test_topics(admin, ["t"], 3)
    assert admin.calls == 1
