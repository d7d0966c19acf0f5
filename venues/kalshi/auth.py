"""Kalshi WebSocket authentication: the three ``KALSHI-ACCESS-*`` headers of the HTTP upgrade.

Signature = base64(RSA-PSS(SHA-256, MGF1-SHA-256, salt = digest length) over ``ts_ms + "GET" + path``), path
without query. Headers are re-signed for every (re)connect. Pure functions apart from the clock default.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = ["WS_PATH", "Signer", "load_private_key"]

WS_PATH = "/trade-api/ws/v2"


def load_private_key(pem: str | bytes) -> rsa.RSAPrivateKey:
    """Parse a PEM (PKCS#8 or PKCS#1) RSA private key; ValueError if it is not one."""
    data = pem.encode() if isinstance(pem, str) else pem
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("private key is not RSA")
    return key


class Signer:
    """Signs Kalshi requests with one key id and private key."""

    def __init__(self, key_id: str, private_key: rsa.RSAPrivateKey) -> None:
        self.key_id = key_id
        self._key = private_key

    @classmethod
    def from_config(cls, key_id: str, pem: str = "", pem_path: str = "") -> Signer:
        """From the PEM text or a PEM file path (text wins)."""
        if not key_id:
            raise ValueError("venue.key_id is empty (or use --no-auth)")
        text = pem or (Path(pem_path).read_text() if pem_path else "")
        if not text:
            raise ValueError("venue.private_key_path / private_key_pem is empty (or use --no-auth)")
        return cls(key_id, load_private_key(text))

    def signature(self, ts_ms: int, method: str = "GET", path: str = WS_PATH) -> str:
        message = f"{ts_ms}{method}{path.split('?', 1)[0]}".encode()
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)
        return base64.b64encode(self._key.sign(message, pss, hashes.SHA256())).decode()

    def headers(self, ts_ms: int | None = None, method: str = "GET", path: str = WS_PATH) -> dict[str, str]:
        """The upgrade (or REST) headers for a request made now (or at ``ts_ms``)."""
        ts = int(time.time() * 1000) if ts_ms is None else ts_ms
        return {
            "KALSHI-ACCESS-KEY": self.key_id,
            "KALSHI-ACCESS-TIMESTAMP": str(ts),
            "KALSHI-ACCESS-SIGNATURE": self.signature(ts, method, path),
        }
