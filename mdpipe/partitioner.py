"""Kafka's default partitioner for keyed records in pure Python: murmur2 + toPositive % partitions.

The same function Java clients, aiokafka and librdkafka (``partitioner=murmur2_random``) use, so any stage
can tell which partition (and hence which dedup/sink worker) a market id lands on without a broker.
:func:`murmur2` runs the C accelerator ``mdpipe._murmur2`` when it was built (:data:`ACCELERATED`; a gatherer
computes the partition of every market it meets first, tens of thousands at start-up) and :func:`murmur2_py`,
the definition, otherwise.
"""

from __future__ import annotations

__all__ = ["ACCELERATED", "murmur2", "murmur2_py", "partition_for", "to_positive"]

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF


def murmur2_py(data: bytes) -> int:
    """Kafka's ``Utils.murmur2``: a signed 32-bit int, equal to what the Java client computes."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    tail = length & ~3
    for i in range(0, tail, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest = length & 3
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


try:
    from mdpipe._murmur2 import murmur2  # type: ignore[import-not-found]  # the same function in C (mdpipe/_murmur2.c)

    ACCELERATED = True
except ImportError:  # built without a C compiler
    murmur2 = murmur2_py
    ACCELERATED = False


def to_positive(value: int) -> int:
    """Kafka's ``Utils.toPositive``: clear the sign bit (not abs)."""
    return value & 0x7FFFFFFF


def partition_for(key: bytes | str, partitions: int) -> int:
    """The partition a keyed record lands on with ``partitions`` partitions (str keys are UTF-8)."""
    if partitions <= 0:
        raise ValueError(f"partitions must be > 0, got {partitions}")
    raw = key.encode() if isinstance(key, str) else key
    return to_positive(murmur2(raw)) % partitions
