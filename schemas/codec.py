"""Versioned msgpack encode/decode shared by all schema modules.

Every record carries its schema version ``v``; decoding rejects any other version. Decoding never raises anything
but :class:`SchemaError` (truncated bytes, wrong version, wrong types all map to it), so a caller can route the bytes
to the dead-letter topic instead of crashing.

The version is checked by msgspec itself while it decodes (a ``Meta`` bound on ``v``), not by a Python hook: a
``__post_init__`` costs a Python call for every record decoded or built, and the dedup stage decodes three raw frames
per venue event (the sink one event per row). Only a record that fails to decode pays for naming the wrong version
(:func:`_version_error`). A record built in Python is not checked (nothing builds one with another version).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

import msgspec

__all__ = ["DECODE_ERRORS", "SCHEMA_VERSION", "SchemaError", "Versioned", "make_codec"]

SCHEMA_VERSION = 1

# What msgspec raises for bytes that are not a record of the type it decodes (the json and msgpack decoders alike):
# DecodeError and ValidationError; TypeError; UnicodeDecodeError for a str that is not UTF-8; RecursionError for
# nesting deeper than its limit (extra trailing array elements and unknown JSON fields are skipped recursively, so a
# record of ~1 KB can do that). A reader of a topic catches all of them: one bad record must never stop a stage.
DECODE_ERRORS: tuple[type[Exception], ...] = (msgspec.DecodeError, TypeError, UnicodeDecodeError, RecursionError)


class SchemaError(ValueError):
    """Bytes that are not a valid record of the expected schema and version."""


class Versioned(msgspec.Struct, kw_only=True, array_like=True, omit_defaults=False):
    """Base of every topic record: ``v`` is the schema version, checked on decode."""

    v: Annotated[int, msgspec.Meta(ge=SCHEMA_VERSION, le=SCHEMA_VERSION)] = SCHEMA_VERSION


# msgspec's message for a value outside the bound on ``v``: "Expected `int` >= 1 - at `$[0]`" (``$[1]`` in a tagged
# record, whose tag comes first)
_BOUND_ERROR = re.compile(r"^Expected `int` [<>]= -?\d+ - at `\$\[(\d+)\]`$")


def _version_error(data: bytes, message: str) -> str | None:
    """'schema version X not supported' when ``message`` is msgspec's complaint about the version field of ``data``."""
    match = _BOUND_ERROR.match(message)
    if match is None:
        return None
    try:
        fields = msgspec.msgpack.decode(data)
        version = fields[int(match.group(1))]
    except (*DECODE_ERRORS, IndexError, KeyError):
        return None
    return f"schema version {version} not supported (expected {SCHEMA_VERSION})"


def make_codec(tp: Any, name: str) -> tuple[Callable[[Any], bytes], Callable[[bytes], Any]]:
    """Return (encode, decode) for ``tp``; decode raises only :class:`SchemaError`."""
    encoder = msgspec.msgpack.Encoder(decimal_format="string")
    decoder = msgspec.msgpack.Decoder(tp)

    def decode(data: bytes) -> Any:
        try:
            return decoder.decode(data)
        except DECODE_ERRORS as exc:
            message = str(exc)
            raise SchemaError(f"{name}: {_version_error(data, message) or message}") from None

    return encoder.encode, decode
