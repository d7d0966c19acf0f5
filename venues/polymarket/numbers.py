"""Exact numbers of the Polymarket wire: checks and canonical spellings, shared by keys, book and normalisation.

Polymarket sends prices and sizes as decimal strings whose spelling varies (``".48"`` in the docs' book example,
``"0.48"`` elsewhere, ``"200"`` vs ``"200.00"``). Everything here is ``Decimal``-exact: a canonical spelling is the
normalised Decimal (``0.4800`` -> ``"0.48"``, ``5.00`` -> ``"5"``, ``-0`` -> ``"0"``). A number that is not finite, has
digits beyond 18 places either side of the point, or lies outside
its field's range raises ``ValueError`` naming the field (bad input: the session dead-letters the message).
"""

from __future__ import annotations

from decimal import Context, Decimal

__all__ = ["PRICE", "SIZE", "check", "norm"]

_MAX_ADJUSTED = 18
PRICE = (Decimal(0), Decimal(1))  # a token pays $1 or $0: every price lies in [0, 1]
SIZE = (Decimal(0), Decimal(10**15))  # sizes are absolute level sizes / fill sizes: never negative
_EXACT = Context(prec=2 * _MAX_ADJUSTED + 4)  # every digit of a checked number (the default context keeps 28)


def check(value: Decimal, field: str, bounds: tuple[Decimal, Decimal] | None = None) -> Decimal:
    """``value`` if finite, of sane magnitude and inside ``bounds``; else ``ValueError`` naming ``field``."""
    if not value.is_finite():
        raise ValueError(f"{field}: {value} is not a finite number")
    if value and (value.adjusted() > _MAX_ADJUSTED or value.as_tuple().exponent < -_MAX_ADJUSTED):  # type: ignore[operator]
        raise ValueError(f"{field}: {_short(value)} is outside the range of a price or size")
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{field}: {_short(value)} is outside [{bounds[0]}, {bounds[1]}]")
    return value


def norm(value: Decimal) -> str:
    """Canonical text of a checked number: 0.4300 -> "0.43", 5.00 -> "5", -0.0 -> "0", 1E+2 -> "100"; every
    significant digit kept (up to 37), so two sizes that differ only past the 28th digit are two spellings."""
    d = value.normalize(_EXACT)
    s = str(d)
    if "E" in s:
        s = format(d, "f")
    return "0" if s == "-0" else s


def _short(value: Decimal) -> str:
    text = str(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} chars)"
