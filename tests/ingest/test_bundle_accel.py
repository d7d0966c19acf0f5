"""The raw producer's bundling in C (``ingest._bundle``) against its definition (``ingest.bundling.bundle_py``): the
same records, frame counts and partition cache on random batches (several topics, keyless and oversized frames,
limits that close bundles mid-batch, caches that fill and clear), and every other shape handed back untouched."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import bundling
from mdpipe.partitioner import partition_for
from schemas.raw_record import encode_bundle, split_bundle

pytestmark = pytest.mark.skipif(not bundling.ACCELERATED, reason="built without a C compiler")

PARTITIONS = {"raw.g1": 6, "raw.g2": 3}


def _both(batch: list[Any], cache: dict[str, dict[bytes, int]], limit: int, overhead: int, cache_max: int) -> Any:
    """Run the C path and the definition on copies of the same inputs: (C's result, its cache), (Python's, its)."""
    c_cache, py_cache = copy.deepcopy(cache), copy.deepcopy(cache)
    c_out = bundling._bundle_c(list(batch), c_cache, dict(PARTITIONS), limit, overhead, cache_max)
    py_out = bundling.bundle_py(list(batch), py_cache, dict(PARTITIONS), limit, overhead, cache_max)
    return (c_out, c_cache), (py_out, py_cache)


_topics = st.sampled_from(["raw.g1", "raw.g2", "markets"])  # "markets" is not bundled (not in the cache)
_keys = st.one_of(st.none(), st.just(b""), st.sampled_from([f"KX-{i}".encode() for i in range(40)]), st.binary())
_values = st.one_of(st.binary(max_size=40), st.binary(min_size=250, max_size=300), st.binary(max_size=70_000))
_items = st.tuples(_topics, _keys, _values)


@settings(max_examples=400, deadline=None)
@given(
    batch=st.lists(_items, max_size=120),
    limit=st.sampled_from([0, 140, 300, 1_000, 4_096, 262_144]),
    overhead=st.sampled_from([-200, 0, 128]),
    cache_max=st.sampled_from([1, 3, 1 << 18]),
    cached=st.integers(0, 8),
)
def test_the_c_path_gives_the_definitions_records_counts_and_cache(
    batch: list[Any], limit: int, overhead: int, cache_max: int, cached: int
) -> None:
    cache = {"raw.g1": {f"KX-{i}".encode(): partition_for(f"KX-{i}", 6) for i in range(cached)}, "raw.g2": {}}
    (c_out, c_cache), (py_out, py_cache) = _both(batch, cache, limit, overhead, cache_max)
    assert c_out == py_out
    assert c_cache == py_cache


def test_many_small_releases_near_their_limits_match_the_definition() -> None:
    """Seeded batches where bundles close mid-release and reopen (a few markets, small frames, limits of a few
    frames), including frames that exactly fill a bundle or exactly fit a record alone: the order in which records
    close, and the byte each threshold counts, must be the definition's."""
    rng = random.Random(13)
    for _ in range(3_000):
        keys = [f"KX-{i}".encode() for i in range(rng.randint(1, 8))]
        batch = [
            (rng.choice(["raw.g1", "raw.g1", "raw.g2", "markets"]), rng.choice(keys), rng.randbytes(rng.randint(0, 60)))
            for _ in range(rng.randint(0, 60))
        ]
        limit = rng.randint(60, 600)
        if batch and rng.random() < 0.5:  # a frame that alone exactly fits, or exactly does not
            topic, key, _ = batch[0]
            batch[0] = (topic, key, bytes(max(0, limit - 11 - len(key) - 128 + rng.choice([0, 1]))))
        (c_out, c_cache), (py_out, py_cache) = _both(batch, {"raw.g1": {}, "raw.g2": {}}, limit, 128, 1 << 18)
        assert c_out == py_out
        assert c_cache == py_cache


def test_a_frame_that_exactly_fills_its_bundle_stays_in_it() -> None:
    limit, key = 1_000, b"KX-1"
    opened = 100 + 5 + 6 + len(key) + 128  # the first frame and its bin header, the tag and array header, key, record
    for extra, records in [(0, 1), (1, 2)]:
        batch = [("raw.g1", key, bytes(100)), ("raw.g1", key, bytes(limit - opened - 5 + extra))]
        (c_out, _), (py_out, _) = _both(batch, {"raw.g1": {}}, limit, 128, 1 << 18)
        assert c_out == py_out and len(c_out[0]) == records


def test_equal_topics_that_are_different_objects_share_their_bundles() -> None:
    """A topic is a dict key in the definition: equal strings are one topic even when they are not one object."""
    batch = [("".join(["raw.", "g1"]), b"KX-1", bytes([i])) for i in range(5)]
    assert batch[0][0] is not batch[1][0]
    (c_out, c_cache), (py_out, py_cache) = _both(batch, {"raw.g1": {}}, 4_096, 128, 1 << 18)
    assert c_out == py_out and c_cache == py_cache and c_out[1] == [5]


def test_a_release_of_many_markets_bundles_each_partitions_frames_in_order() -> None:
    """The gatherer's common case at scale: 3,000 frames over 500 markets; every bundle decodes to its frames, each
    on its key's partition, each partition's frames in the order handed over."""
    batch = [("raw.g1", f"KXM-{i % 500}".encode(), f"frame {i} ".encode() * 20) for i in range(3_000)]
    (c_out, c_cache), (py_out, py_cache) = _both(batch, {"raw.g1": {}}, 262_144, 128, 1 << 18)
    assert c_out == py_out and c_cache == py_cache
    records, counts = c_out
    assert sum(counts) == 3_000 and len(records) < 3_000
    by_partition: dict[int, list[bytes]] = {}
    for (_, key, value), count in zip(records, counts, strict=True):
        frames = split_bundle(value) if count > 1 else [value]
        assert len(frames) == count
        by_partition.setdefault(partition_for(key, 6), []).extend(frames)
    for partition, frames in by_partition.items():
        assert frames == [v for _, k, v in batch if partition_for(k, 6) == partition]


def test_the_bundle_bytes_are_the_schemas_encoding_at_every_header_size() -> None:
    """msgpack headers change at 16 and 65,536 items and at 256 and 65,536 bytes: the C encoding must match
    schemas.raw_record.encode_bundle at each."""
    for frames, size in [(2, 10), (15, 255), (16, 256), (17, 65_535), (3, 65_536), (70_000, 1)]:
        batch = [("raw.g1", b"KX-1", bytes([i % 251]) * size) for i in range(frames)]
        (c_out, _), (py_out, _) = _both(batch, {"raw.g1": {}}, 1 << 30, 128, 1 << 18)
        assert c_out == py_out
        assert c_out[0] == [("raw.g1", b"KX-1", encode_bundle([v for _, _, v in batch]))]


@pytest.mark.parametrize(
    "item",
    [
        ("raw.g1", "KX-1", b"frame"),  # a str key: partition_for encodes it
        ("raw.g1", b"KX-1", bytearray(b"frame")),
        ["raw.g1", b"KX-1", b"frame"],
        ("raw.g1", b"KX-1"),
        ("raw.g1", memoryview(b"KX-1"), b"frame"),
    ],
)
def test_other_shapes_go_back_to_the_definition_untouched(item: Any) -> None:
    cache: dict[str, dict[bytes, int]] = {"raw.g1": {}}
    assert bundling._bundle_c([("raw.g1", b"KX-2", b"x"), item], cache, dict(PARTITIONS), 4_096, 128, 8) is None
    assert cache == {"raw.g1": {}}


class _ClearingTopic(str):
    """A topic whose comparison empties the batch being read: the C path must not run it (a use-after-free once)."""

    batch: list[Any] = []

    def __eq__(self, other: object) -> bool:
        _ClearingTopic.batch.clear()
        return str.__eq__(self, other)

    __hash__ = str.__hash__


class _Cache(dict):  # type: ignore[type-arg]
    pass


@pytest.mark.parametrize(
    ("batch", "partition_of", "partitions", "sizes"),
    [
        ([("raw.g1", b"KX-1", b"a"), (_ClearingTopic("raw.g1"), b"KX-1", b"b")], {"raw.g1": {}}, {"raw.g1": 6}, None),
        ([("raw.g1", b"KX-1", b"a")], {"raw.g1": {}}, {"raw.g1": 2**32}, None),  # a count C would truncate
        ([("raw.g1", b"KX-1", b"a")], {"raw.g1": {}}, {"raw.g1": 2**24 + 1}, None),
        ([("raw.g1", b"KX-1", b"a")], {"raw.g1": {}}, {"raw.g1": 6.0}, None),
        ([("raw.g1", b"KX-1", b"a")], {"raw.g1": None}, {"raw.g1": 6}, None),
        ([("raw.g1", b"KX-1", b"a")], {"raw.g1": _Cache()}, {"raw.g1": 6}, None),
        ([("raw.g1", b"KX-1", b"a")], {"raw.g1": {b"KX-1": -1}}, {"raw.g1": 6}, None),  # a damaged cache
        ([("raw.g1", b"KX-1", b"a")], {"raw.g1": {b"KX-1": 1.0}}, {"raw.g1": 6}, None),
        ([("raw.g1", b"KX-1", b"a")], {"raw.g1": {}}, {"raw.g1": 6}, (2**63, 128, 8)),
        ([("raw.g1", b"KX-1", b"a")], {"raw.g1": {}}, {"raw.g1": 6}, (4_096.0, 128, 8)),
        ([("raw.g1", b"KX-1", b"a")], {"raw.g1": {}}, {"raw.g1": 6}, (4_096, 2**62 + 1, 8)),
    ],
)
def test_anything_but_plain_types_goes_back_to_the_definition_untouched(
    batch: list[Any], partition_of: dict[str, Any], partitions: dict[str, Any], sizes: tuple[Any, ...] | None
) -> None:
    limit, overhead, cache_max = sizes or (4_096, 128, 8)
    _ClearingTopic.batch = batch
    before = copy.deepcopy(partition_of)
    assert bundling._bundle_c(batch, partition_of, partitions, limit, overhead, cache_max) is None
    assert partition_of == before and len(batch) in (1, 2)


def test_bundle_takes_the_c_path_and_falls_back_for_other_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real_c, real_py = bundling._bundle_c, bundling.bundle_py
    monkeypatch.setattr(bundling, "_bundle_c", lambda *a: calls.append("c") or real_c(*a))
    monkeypatch.setattr(bundling, "bundle_py", lambda *a: calls.append("py") or real_py(*a))
    batch = [("raw.g1", b"KX-1", b"a"), ("raw.g1", b"KX-1", b"b")]
    records, counts = bundling.bundle(batch, {"raw.g1": {}}, dict(PARTITIONS), 4_096, 128, 8)
    assert calls == ["c"] and counts == [2] and records == [("raw.g1", b"KX-1", encode_bundle([b"a", b"b"]))]
    calls.clear()
    records, counts = bundling.bundle([("raw.g1", "KX-1", b"a")], {"raw.g1": {}}, dict(PARTITIONS), 4_096, 128, 8)
    assert calls == ["c", "py"] and records == [("raw.g1", "KX-1", b"a")] and counts == [1]


def test_errors_are_the_definitions() -> None:
    batch = [("raw.g3", b"KX-1", b"x")]  # a cached topic whose count is unknown
    for run in (bundling._bundle_c, bundling.bundle_py):
        with pytest.raises(KeyError):
            run(list(batch), {"raw.g3": {}}, dict(PARTITIONS), 4_096, 128, 8)
        with pytest.raises(ValueError, match="partitions must be > 0"):
            run(list(batch), {"raw.g3": {}}, {"raw.g3": 0}, 4_096, 128, 8)
