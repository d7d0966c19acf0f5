"""Fixtures for the venue's tests: the ingest tests' ``ih`` (a gatherer against the emulator, topics read back) for
the venue's behaviours through the real emulator, gatherer and broker, and ``kit``, the emulator test helpers of
tests/venue_sim (an in-process venue and plain clients) for the tests of the emulator's Kalshi protocol here
(importlib mode does not let test modules import a conftest)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from tests.ingest.conftest import ih

__all__ = ["ih", "kit"]


def _emulator_helpers() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "venue_sim" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_venue_sim_test_helpers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_helpers = _emulator_helpers()


@pytest.fixture
def kit() -> SimpleNamespace:
    """``running_sim``, ``ws_client``, ``RawClient``, ``Client`` (see tests/venue_sim/conftest.py)."""
    return SimpleNamespace(
        running_sim=_helpers.running_sim,
        ws_client=_helpers.ws_client,
        RawClient=_helpers.RawClient,
        Client=_helpers.Client,
    )
