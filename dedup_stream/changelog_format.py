"""Record layout of the native dedup worker's state changelog (``<app_id>-seen-changelog``), pure logic.

Two layouts, told apart by the record key, both read by :func:`expand`:

- **single** (what every worker wrote before, and the Faust engine writes): key = store key, value = the encoded
  :class:`dedup_stream.logic.Winner` (a None value is a tombstone).
- **batch** (what the native worker writes now): one record carries every state write of one consumed batch for one
  partition. Key = :data:`BATCH_PREFIX` + a writer id (random per process) + a sequence number, so no two batch
  records ever share a key and compaction never removes one (retention, ``window_s``, is what bounds them, exactly
  as it bounds single records); value = msgpack array of ``[store key, value]`` pairs, in write order. A store key
  starts with a market ticker, never with :data:`BATCH_PREFIX`'s first byte (NUL-led keys are the worker's own, see
  :data:`dedup_stream.partition_state.OFFSET_KEY`).

Why batches: one record per winner cost the worker a ``produce`` call, a librdkafka message and a Python delivery
callback per venue event, and the broker a record to append, validate and compact; per consumed batch and partition
it is one of each. Restoring reads fewer, larger records. A changelog written by an older worker (single records)
is restored as before; both layouts can be mixed in one partition (an upgrade in place) and are applied in offset
order. The Faust engine reads single records only: switch an app id from the native to the Faust engine with a new
app id (a replay), as the README says for any engine change.
"""

from __future__ import annotations

import itertools
import os
import struct
from collections.abc import Iterator

import msgspec

__all__ = ["BATCH_PREFIX", "MAX_PAIRS", "BatchKeys", "encode_batch", "expand", "is_batch"]

BATCH_PREFIX = b"\x01mdpipe-batch\x1f"
MAX_PAIRS = 2000  # pairs per batch record: ~100-200 KB, far under the broker's and producer's size limits
_SEQ = struct.Struct(">Q")
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[tuple[bytes, bytes]])


class BatchKeys:
    """Keys of batch records: unique per writer process (random id) and per record (sequence number)."""

    def __init__(self, writer_id: bytes | None = None) -> None:
        self.prefix = BATCH_PREFIX + (writer_id if writer_id is not None else os.urandom(8))
        self._seq = itertools.count()

    def next(self) -> bytes:
        return self.prefix + _SEQ.pack(next(self._seq))


def is_batch(key: bytes | None) -> bool:
    return key is not None and key.startswith(BATCH_PREFIX)


def encode_batch(pairs: list[tuple[bytes, bytes]]) -> bytes:
    """The value of a batch record holding ``pairs`` (store key, value), at most :data:`MAX_PAIRS` of them."""
    return _encoder.encode(pairs)


def expand(key: bytes | None, value: bytes | None) -> Iterator[tuple[bytes, bytes | None]]:
    """The state writes one changelog record stands for, in order: its pairs for a batch record, itself otherwise.

    Raises ``ValueError`` for a batch record whose value is not a list of pairs (a corrupt changelog must stop a
    restore, not silently lose state)."""
    if is_batch(key):
        if value is None:
            return  # a tombstone of a batch key (never written; nothing to apply)
        try:
            pairs = _decoder.decode(value)
        except msgspec.DecodeError as exc:
            raise ValueError(f"changelog batch record {key!r}: {exc}") from None
        yield from pairs
    elif key is not None:
        yield key, value
