"""Versioned msgpack encode/decode shared by all schema modules.

Every record carries its schema version ``v``; :class:`Versioned` rejects any other version while
decoding. Decoding never raises anything but :class:`SchemaError` (truncated bytes, wrong version,
wrong types all map to it), so a caller can route the bytes to the dead-letter topic instead of crashing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

__all__ = ["SCHEMA_VERSION", "SchemaError", "Versioned", "make_codec"]

SCHEMA_VERSION = 1


class SchemaError(ValueError):
    """Bytes that are not a valid record of the expected schema and version."""


class Versioned(msgspec.Struct, kw_only=True, array_like=True, omit_defaults=False):
    """Base of every topic record: ``v`` is the schema version, checked on decode."""

    v: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.v != SCHEMA_VERSION:
            raise ValueError(f"schema version {self.v} not supported (expected {SCHEMA_VERSION})")


def make_codec(tp: Any, name: str) -> tuple[Callable[[Any], bytes], Callable[[bytes], Any]]:
    """Return (encode, decode) for ``tp``; decode raises only :class:`SchemaError`."""
    encoder = msgspec.msgpack.Encoder(decimal_format="string")
    decoder = msgspec.msgpack.Decoder(tp)

    def decode(data: bytes) -> Any:
        try:
            return decoder.decode(data)
        except (msgspec.DecodeError, TypeError) as exc:
            raise SchemaError(f"{name}: {exc}") from None

    return encoder.encode, decode
