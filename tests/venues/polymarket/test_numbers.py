"""The canonical spelling of Polymarket numbers (``venues.polymarket.numbers.norm``) that event keys are made of:
spellings of one value agree, and two values stay two spellings down to the last digit ``check`` accepts."""

from __future__ import annotations

from decimal import Decimal

import pytest

from venues.polymarket.numbers import SIZE, check, norm


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("0.4800", "0.48"),
        (".48", "0.48"),
        ("200.00", "200"),
        ("-0", "0"),
        ("1E+2", "100"),
        ("0.000000000000000001", "0.000000000000000001"),
    ],
)
def test_spellings_of_one_value_agree(spelling: str, canonical: str) -> None:
    assert norm(check(Decimal(spelling), "size")) == canonical


def test_two_sizes_differing_past_the_28th_digit_stay_apart() -> None:
    a = check(Decimal("123456789012345.123456789012345678"), "size", SIZE)
    b = check(Decimal("123456789012345.123456789012345679"), "size", SIZE)
    assert norm(a) == "123456789012345.123456789012345678"
    assert norm(a) != norm(b)
