"""Pure pieces of the archive: type mapping, exact decimals through Arrow, canonical values, archive file names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from archive.export import ExportError, arrow_schema, to_batch
from archive.raw import file_name, parse_file_name
from archive.schema import DECIMAL, Column, UnsupportedType, arrow_type, canonical


def test_types_map_exactly() -> None:
    assert arrow_type("numeric") == pa.decimal128(38, 10)
    assert arrow_type("_numeric") == pa.list_(pa.decimal128(38, 10))
    assert arrow_type("timestamptz") == pa.timestamp("us", tz="UTC")
    assert arrow_type("_text") == pa.list_(pa.string())
    assert arrow_type("jsonb") == pa.string()
    with pytest.raises(UnsupportedType, match="col_x"):
        arrow_type("point", "col_x")


decimals = st.decimals(
    min_value=Decimal("-999999999999999999.9999999999"),
    max_value=Decimal("999999999999999999.9999999999"),
    places=10,
    allow_nan=False,
    allow_infinity=False,
)


@given(st.lists(st.one_of(st.none(), decimals), min_size=1, max_size=20))
def test_every_representable_decimal_round_trips_exactly(values: list[Decimal | None]) -> None:
    columns = [Column("price", "numeric")]
    batch = to_batch(arrow_schema("t", columns), columns, [(v,) for v in values])
    back = batch.column(0).to_pylist()
    assert [canonical(v) for v in back] == [canonical(v) for v in values]
    assert all(b == v for b, v in zip(back, values, strict=True))


@pytest.mark.parametrize("value", [Decimal("0.12345678901"), Decimal("1" + "0" * 28)])
def test_a_decimal_that_does_not_fit_is_refused(value: Decimal) -> None:
    columns = [Column("yes_price", "numeric")]
    with pytest.raises(ExportError, match="yes_price"):
        to_batch(arrow_schema("t", columns), columns, [(value,)])
    assert DECIMAL.scale == 10


def test_canonical_equates_what_is_equal_and_only_that() -> None:
    assert canonical(Decimal("0.5600")) == canonical(Decimal("0.56")) == canonical(Decimal("0.5600000000"))
    assert canonical(Decimal("0")) == canonical(Decimal("0E-10"))
    assert canonical(Decimal("0.56")) != canonical(Decimal("0.57"))
    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert canonical(at) == canonical(at.astimezone(timezone(timedelta(hours=-5))))
    assert canonical([Decimal("1.0"), Decimal("2")]) == canonical((Decimal("1"), Decimal("2.00")))


def test_archive_file_names_carry_partition_and_offsets() -> None:
    name = file_name(7, 0, 123_456)
    assert name == "p007-000000000000-000000123456.parquet"
    assert parse_file_name(f"raw/gatherer=g1/date=2026-01-01/{name}") == (7, 0, 123_456)
    assert parse_file_name("raw/gatherer=g1/date=2026-01-01/p007-1-2.parquet.abcd1234.tmp") is None


def test_canonical_keeps_every_digit_the_archive_holds() -> None:
    """decimal128(38, 10) holds 38 digits: two values equal in their first 28 are two values to the row-for-row check
    (the default decimal context would round both to one)."""
    a, b = Decimal("1234567890123456789.0123456789"), Decimal("1234567890123456789.0123456788")
    assert canonical(a) != canonical(b)
    assert canonical(Decimal("0.4300")) == canonical(Decimal("0.43"))
