"""Grouping a release's frames into the raw producer's records: bundles per raw partition (:mod:`schemas.raw_record`).

:func:`bundle_py` is the definition; :func:`bundle` runs the C accelerator ``ingest._bundle`` when it was built
(:data:`ACCELERATED`; a gatherer groups every frame it releases) and hands it back to :func:`bundle_py` for a batch
of another shape. Pure: no I/O; the caller's partition cache is the only state it changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mdpipe.partitioner import partition_for
from schemas.raw_record import encode_bundle

__all__ = ["ACCELERATED", "Batch", "bundle", "bundle_py"]

Batch = list[tuple[str, bytes | None, bytes]]


def bundle_py(
    batch: Batch,
    partition_of: dict[str, dict[bytes, int]],
    partitions: dict[str, int],
    limit: int,
    overhead: int,
    cache_max: int,
) -> tuple[Batch, list[int]]:
    """``batch`` as the records to produce: the frames of each partition of a topic in ``partition_of`` (its
    markets' partitions, computed with its count in ``partitions`` and remembered up to ``cache_max`` keys, then
    forgotten all at once) in bundles of up to ``limit`` bytes, ``overhead`` bytes counted for each record's framing
    (keyed by their first frame's market, so the partitioner puts each on its frames' partition), in their order; a
    frame alone in its record, larger than the limit, of another topic or without a key stays a plain record.
    Returns the records and the frames each carries; every partition's frames keep their order (a record closes
    before the next one of its partition opens)."""
    out: Batch = []
    counts: list[int] = []
    # (topic, partition) -> the open bundle: its key, its frames, its size in bytes; closed ones go to out
    open_: dict[tuple[str, int], tuple[bytes, list[bytes], list[int]]] = {}
    for topic, key, value in batch:
        parts = partition_of.get(topic)
        if parts is None or not key:
            out.append((topic, key, value))
            counts.append(1)
            continue
        partition = parts.get(key)
        if partition is None:
            if len(parts) >= cache_max:
                parts.clear()
            partition = parts[key] = partition_for(key, partitions[topic])
        size = len(value) + 5  # with its msgpack bin header, at most
        group = open_.get((topic, partition))
        if group is not None and group[2][0] + size > limit:
            del open_[topic, partition]
            _close(topic, group, out, counts)
            group = None
        if group is not None:
            group[1].append(value)
            group[2][0] += size
        elif size + 6 + len(key) + overhead > limit:  # + the tag, the array header, key and record
            out.append((topic, key, value))
            counts.append(1)
        else:
            open_[topic, partition] = (key, [value], [size + 6 + len(key) + overhead])
    for (topic, _), group in open_.items():
        _close(topic, group, out, counts)
    return out, counts


def _close(topic: str, group: tuple[bytes, list[bytes], list[int]], out: Batch, counts: list[int]) -> None:
    """Append a bundle (a lone frame as a plain record) to the records of a release."""
    key, values, _ = group
    out.append((topic, key, values[0] if len(values) == 1 else encode_bundle(values)))
    counts.append(len(values))


_bundle_c: Callable[..., Any] | None
try:
    from ingest._bundle import bundle as _bundle_c  # type: ignore[import-not-found,no-redef]  # ingest/_bundle.c

    ACCELERATED = True
except ImportError:  # built without a C compiler
    _bundle_c = None
    ACCELERATED = False


def bundle(
    batch: Batch,
    partition_of: dict[str, dict[bytes, int]],
    partitions: dict[str, int],
    limit: int,
    overhead: int,
    cache_max: int,
) -> tuple[Batch, list[int]]:
    """:func:`bundle_py`, in C when built (the same records, counts and cache)."""
    if _bundle_c is not None:
        done = _bundle_c(batch, partition_of, partitions, limit, overhead, cache_max)
        if done is not None:
            return done  # type: ignore[no-any-return]
    return bundle_py(batch, partition_of, partitions, limit, overhead, cache_max)
