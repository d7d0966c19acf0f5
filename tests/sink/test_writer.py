"""The loader's writer thread: one batch in flight, order kept, failures surface in the consumer thread."""

from __future__ import annotations

import threading
import time

import pytest

from sink.batch import Batch
from sink.loader import _Writer


def test_batches_are_written_in_order_one_at_a_time() -> None:
    written: list[int] = []
    active = 0
    overlap = False
    lock = threading.Lock()

    def write(batch: Batch) -> None:
        nonlocal active, overlap
        with lock:
            active += 1
            overlap = overlap or active > 1
        time.sleep(0.01)
        written.append(batch.size)
        with lock:
            active -= 1

    writer = _Writer(write)
    for i in range(1, 6):
        batch = Batch()
        batch.size = i
        writer.submit(batch)
    writer.wait_idle()
    assert writer.idle
    writer.close()
    assert written == [1, 2, 3, 4, 5]
    assert not overlap


def test_a_failed_write_is_raised_on_the_next_call() -> None:
    def write(batch: Batch) -> None:
        raise KeyError("boom")

    writer = _Writer(write)
    writer.submit(Batch())
    with pytest.raises(RuntimeError, match="writer failed") as info:
        writer.wait_idle()
    assert isinstance(info.value.__cause__, KeyError)
    with pytest.raises(RuntimeError):
        writer.submit(Batch())
    writer.close()
