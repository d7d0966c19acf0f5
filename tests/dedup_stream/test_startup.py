"""After a replay, `delete_internal_topics` removes exactly the topics the replay's app id created."""

from __future__ import annotations

import time

import pytest

from dedup_stream.startup import delete_internal_topics, internal_topics

pytestmark = pytest.mark.integration


def test_delete_internal_topics_removes_only_the_app_topics(dedup_topics) -> None:  # type: ignore[no-untyped-def]
    from confluent_kafka.admin import AdminClient, NewTopic

    app_id = dedup_topics.app_id("replay-x")
    names = internal_topics(app_id)
    assert names == [f"{app_id}-seen-changelog", f"{app_id}-__assignor-__leader"]
    admin = AdminClient({"bootstrap.servers": dedup_topics.bootstrap})
    for future in admin.create_topics([NewTopic(t, 1, 1) for t in names]).values():
        future.result()
    deadline = time.monotonic() + 30
    while not set(names) <= set(admin.list_topics(timeout=10).topics) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sorted(delete_internal_topics({"bootstrap.servers": dedup_topics.bootstrap}, app_id)) == sorted(names)
    deadline = time.monotonic() + 30
    while set(names) & set(admin.list_topics(timeout=10).topics) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = set(admin.list_topics(timeout=10).topics)
    assert not set(names) & left
    assert dedup_topics.events in left  # nothing else touched
    assert delete_internal_topics({"bootstrap.servers": dedup_topics.bootstrap}, app_id) == []
