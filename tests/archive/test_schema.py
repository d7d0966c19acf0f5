"""Pure pieces of the archive: type mapping, exact decimals through Arrow, canonical values, archive file names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from archive.export import ExportError, arrow_schema, to_batch
from archive.raw import RAW_SCHEMA, file_name, parse_file_name
from archive.reader import iter_files, partition_records
from archive.schema import DECIMAL, Column, UnsupportedType, arrow_type, canonical
from archive.storage import open_location
from schemas import RawFrame, encode_raw
from schemas.raw_record import encode_bundle
from venues import default_name


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


def _trade(i: int) -> RawFrame:
    return RawFrame(venue=default_name(), gatherer="g1", conn=1, sid=1, seq=i, recv_ns=i, kind="trade",
                    market=f"KX-{i}", event_key=f"trade:{i}", payload=b"{}")  # fmt: skip


def test_an_archive_without_slots_reads_with_each_bundle_as_its_frames(tmp_path: Path) -> None:
    """A file written before the ``slot`` column: its rows read with ``slot`` None, and a row holding a whole bundle
    record (archived before bundles were split) as one row per frame, with the slots the archiver now writes; a
    bundle that does not split stays one row."""
    frames = [encode_raw(_trade(i)) for i in range(3)]
    damaged = encode_bundle(frames[:1])[:-3]
    values = [frames[0], encode_bundle(frames[1:]), damaged]
    old_schema = pa.schema([f for f in RAW_SCHEMA if f.name != "slot"])
    rows = [
        {"topic": "raw.g1", "partition": 0, "offset": i, "kafka_ts": 1000 + i, "key": b"KX", "value": v}
        for i, v in enumerate(values)
    ]
    path = tmp_path / "raw" / "gatherer=g1" / "date=1970-01-01" / file_name(0, 0, 2)
    path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=old_schema), path)
    location = open_location(str(tmp_path))
    assert [r.slot for r in iter_files(location, location.files("raw"))] == [None, None, None]
    got = [(r.offset, r.slot, r.value) for r in partition_records(location, 0)]
    assert got == [(0, None, frames[0]), (1, 0, frames[1]), (1, 1, frames[2]), (2, None, damaged)]
