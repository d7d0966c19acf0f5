"""Consumer-group lag arithmetic of `mdpipe status` (records and seconds per partition, group totals)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ops.group_lag import lag_records, lag_seconds, next_record_offset, summarise


def test_records_after_the_commit_or_after_the_low_watermark() -> None:
    assert lag_records(committed=40, low=0, high=100) == 60
    assert lag_records(committed=None, low=10, high=100) == 90  # never committed: what an earliest reset reads
    assert lag_records(committed=-1001, low=10, high=100) == 90
    assert lag_records(committed=5, low=10, high=100) == 90  # retention removed 5..9: they cannot be read
    assert lag_records(committed=100, low=0, high=100) == 0
    assert next_record_offset(5, 10) == 10 and next_record_offset(40, 0) == 40 and next_record_offset(None, 3) == 3


def test_seconds_are_the_age_of_the_oldest_unprocessed_record() -> None:
    assert lag_seconds(records=0, waiting_since_ms=None, now_ms=10_000) == 0.0
    assert lag_seconds(records=3, waiting_since_ms=4_000, now_ms=10_000) == 6.0
    assert lag_seconds(records=3, waiting_since_ms=None, now_ms=10_000) is None  # could not read the record
    assert lag_seconds(records=3, waiting_since_ms=12_000, now_ms=10_000) == 0.0  # producer clock ahead


@given(
    low=st.integers(0, 10**6),
    size=st.integers(0, 10**6),
    committed=st.one_of(st.none(), st.integers(-1001, 3 * 10**6)),
)
def test_lag_is_bounded_by_what_the_partition_holds(low: int, size: int, committed: int | None) -> None:
    lag = lag_records(committed, low, low + size)
    assert 0 <= lag <= size
    assert next_record_offset(committed, low) >= low


def test_summarise_a_group() -> None:
    group = summarise(
        "mdpipe-dedup",
        "dedup",
        "Stable",
        2,
        [("raw.g2", 0, 90, 0, 100), ("raw.g1", 1, None, 0, 5), ("raw.g1", 0, 50, 0, 50)],
        {("raw.g2", 0): 1_000, ("raw.g1", 1): 7_000},
        {("raw.g1", 0): "mdpipe-dedup@10.0.0.5", ("raw.g2", 0): "mdpipe-dedup@10.0.0.5"},
        now_ms=11_000,
    )
    assert [(p.topic, p.partition) for p in group.partitions] == [("raw.g1", 0), ("raw.g1", 1), ("raw.g2", 0)]
    assert [p.lag_records for p in group.partitions] == [0, 5, 10]
    assert [p.lag_s for p in group.partitions] == [0.0, 4.0, 10.0]
    assert group.partitions[1].committed is None and group.partitions[1].owner == ""
    assert (group.lag_records, group.lag_s) == (15, 10.0)
    data = group.to_dict()
    assert data["partitions"][2] == {
        "topic": "raw.g2",
        "partition": 0,
        "committed": 90,
        "low": 0,
        "high": 100,
        "lag_records": 10,
        "lag_s": 10.0,
        "owner": "mdpipe-dedup@10.0.0.5",
        "expired": 0,
    }


def test_a_group_whose_waiting_record_could_not_be_read_has_no_seconds_figure() -> None:
    group = summarise("g", "sink", "Empty", 0, [("events", 0, 1, 0, 9)], {}, {}, now_ms=5)
    assert group.lag_records == 8 and group.lag_s is None


def test_records_deleted_before_the_group_read_them_are_counted_apart_from_the_lag() -> None:
    group = summarise(
        "mdpipe-sink",
        "sink",
        "Stable",
        1,
        [("events", 0, 40, 55, 100), ("events", 1, None, 30, 90), ("events", 2, 70, 60, 80)],
        {("events", 0): 1_000, ("events", 1): 1_000, ("events", 2): 1_000},
        {},
        now_ms=2_000,
    )
    assert [p.expired for p in group.partitions] == [15, 0, 0]  # no commit: a new group starts at the oldest on purpose
    assert [p.lag_records for p in group.partitions] == [45, 60, 10]
    assert (group.expired, group.to_dict()["expired"]) == (15, 15)
