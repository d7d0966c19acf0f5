"""Sans-I/O pieces: shard plan, backoff, request signing (the market registry: test_registry.py)."""

from __future__ import annotations

import base64
import random
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from ingest.backoff import backoff
from ingest.shards import ShardPlan
from venue_sim.keys import generate_test_keypair, load_public_key, verify
from venues.kalshi.auth import WS_PATH, Signer, load_private_key


def test_shard_plan_fills_connections_and_reuses_freed_room() -> None:
    plan = ShardPlan(3)
    placed = plan.assign([f"M{i}" for i in range(7)])
    assert {k: len(v) for k, v in placed.items()} == {0: 3, 1: 3, 2: 1}
    assert plan.assign(["M0"]) == {}
    assert plan.release(["M1", "X"]) == {0: ["M1"]}
    assert plan.assign(["N1", "N2"]) == {0: ["N1"], 2: ["N2"]}
    assert plan.connections == 3


def test_backoff_grows_with_jitter_and_caps() -> None:
    delays = backoff(0.5, 4.0, rng=random.Random(1))
    values = [next(delays) for _ in range(8)]
    assert 0.25 <= values[0] <= 0.5
    assert all(v <= 4.0 for v in values) and values[-1] >= 2.0
    assert len(set(values)) == len(values)


def test_signature_verifies_with_public_key(tmp_path: Path) -> None:
    pair = generate_test_keypair(tmp_path, bits=2048)
    signer = Signer.from_config(pair.key_id, pem_path=pair.private_key_path)
    headers = signer.headers(ts_ms=1_700_000_000_123)
    assert headers["KALSHI-ACCESS-KEY"] == pair.key_id
    assert headers["KALSHI-ACCESS-TIMESTAMP"] == "1700000000123"
    public = load_public_key(pair.public_key_pem)
    assert verify(public, headers["KALSHI-ACCESS-SIGNATURE"], "1700000000123", "GET", WS_PATH)
    assert not verify(public, headers["KALSHI-ACCESS-SIGNATURE"], "1700000000124", "GET", WS_PATH)
    # RSA-PSS with salt = digest length, checked independently of the emulator's helper
    sig = base64.b64decode(headers["KALSHI-ACCESS-SIGNATURE"])
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    public.verify(sig, b"1700000000123GET/trade-api/ws/v2", pss, hashes.SHA256())
    assert load_private_key(pair.private_key_pem).key_size == 2048


def test_signer_requires_key() -> None:
    with pytest.raises(ValueError):
        Signer.from_config("", pem="x")
    with pytest.raises(ValueError):
        Signer.from_config("id")
