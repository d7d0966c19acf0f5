"""Request signing: the WebSocket upgrade's and REST requests' headers (RSA-PSS over timestamp, method, path)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from venue_sim.keys import generate_test_keypair, load_public_key, verify
from venues.kalshi.auth import WS_PATH, Signer, load_private_key


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
