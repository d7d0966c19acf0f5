"""The murmur2 partitioner (the pure-Python definition and the C accelerator) against vectors computed by Kafka's
Java Utils.murmur2 (kafka-clients 4.1.1), and the two against each other on random input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mdpipe import partitioner
from mdpipe.partitioner import murmur2, murmur2_py, partition_for, to_positive

# Java: org.apache.kafka.common.utils.Utils.murmur2(s.getBytes(UTF_8)); the first six are Kafka's UtilsTest cases.
JAVA_VECTORS = {
    "21": -973932308,
    "foobar": -790332482,
    "a-little-bit-long-string": -985981536,
    "a-little-bit-longer-string": -1486304829,
    "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    "abc": 479470107,
    "": 275646681,
    "KXBTCD-25NOV2717-T99999.99": -1944746986,
    "é": 186971271,
}


@pytest.mark.parametrize(("key", "expected"), JAVA_VECTORS.items())
def test_murmur2_matches_java(key: str, expected: int) -> None:
    assert murmur2(key.encode()) == expected
    assert murmur2_py(key.encode()) == expected


def test_the_c_accelerator_is_what_murmur2_runs_when_built() -> None:
    if not partitioner.ACCELERATED:
        pytest.skip("built without a C compiler")
    assert murmur2 is not murmur2_py and type(murmur2).__name__ == "builtin_function_or_method"


@given(st.binary(max_size=80))
def test_the_c_accelerator_equals_the_definition(data: bytes) -> None:
    assert murmur2(data) == murmur2_py(data)
    assert murmur2(bytearray(data)) == murmur2_py(data)
    assert murmur2(memoryview(data)) == murmur2_py(data)


def test_to_positive_clears_sign_bit_not_abs() -> None:
    assert to_positive(-1) == 0x7FFFFFFF
    assert to_positive(-973932308) == -973932308 & 0x7FFFFFFF
    assert to_positive(5) == 5


def test_partition_for_str_and_bytes_agree_and_stay_in_range() -> None:
    for key in JAVA_VECTORS:
        p = partition_for(key, 6)
        assert p == partition_for(key.encode(), 6)
        assert p == (JAVA_VECTORS[key] & 0x7FFFFFFF) % 6


def test_partition_for_rejects_zero_partitions() -> None:
    with pytest.raises(ValueError, match="partitions"):
        partition_for("x", 0)
