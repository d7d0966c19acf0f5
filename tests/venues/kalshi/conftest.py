"""Fixtures for the venue's tests: the ingest tests' ``ih`` (a gatherer against the emulator, topics read back) for
the venue's behaviours through the real emulator, gatherer and broker."""

from __future__ import annotations

from tests.ingest.conftest import ih

__all__ = ["ih"]
