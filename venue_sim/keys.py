"""Test RSA key pairs and request signatures (RSA-PSS, SHA-256, MGF1-SHA-256, salt = digest length) of
``timestamp + method + path``, the signed WebSocket upgrade the emulator checks for a venue whose profile names
authentication headers (:attr:`venues.interface.EmulatorProfile.auth_headers`).

Used by the emulator's auth check, its tests, and by other stages' tests that need a key the emulator trusts.
``WS_PATH`` is the default venue's WebSocket path (what :func:`sign` signs unless told another path).
"""

from __future__ import annotations

import base64
import os
import uuid
from pathlib import Path

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from venue_sim.wire import WIRE

__all__ = ["WS_PATH", "TestKeyPair", "generate_test_keypair", "load_public_key", "sign", "verify"]

WS_PATH: str = WIRE.WS_PATH


class TestKeyPair(msgspec.Struct, frozen=True):
    """Paths of a generated key pair and a key id to send in the venue's key id header."""

    key_id: str
    private_path: str
    public_path: str
    private_key_pem: str
    public_key_pem: str

    @property
    def private_key_path(self) -> str:
        return self.private_path

    @property
    def public_key_path(self) -> str:
        return self.public_path


def generate_test_keypair(directory: str | os.PathLike[str], bits: int = 2048) -> TestKeyPair:
    """Generate an RSA key; write ``private.pem`` (PKCS#8, mode 600) and ``public.pem`` in ``directory``."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    priv = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    priv_path = folder / "private.pem"
    pub_path = folder / "public.pem"
    priv_path.write_bytes(priv)
    priv_path.chmod(0o600)
    pub_path.write_bytes(pub)
    return TestKeyPair(str(uuid.uuid4()), str(priv_path), str(pub_path), priv.decode(), pub.decode())


def _pss() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


def sign(private_key_pem: str | bytes, ts_ms: int | str, method: str = "GET", path: str = WS_PATH) -> str:
    """Base64 signature of ``ts + method + path`` (query stripped), as the venue's signed upgrade carries it."""
    data = private_key_pem.encode() if isinstance(private_key_pem, str) else private_key_pem
    key = serialization.load_pem_private_key(data, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    message = f"{ts_ms}{method}{path.split('?', 1)[0]}".encode()
    return base64.b64encode(key.sign(message, _pss(), hashes.SHA256())).decode()


def load_public_key(pem: str | bytes) -> rsa.RSAPublicKey:
    data = pem.encode() if isinstance(pem, str) else pem
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("public key is not RSA")
    return key


def verify(public_key: rsa.RSAPublicKey, signature_b64: str, ts_ms: str, method: str, path: str) -> bool:
    """True when ``signature_b64`` signs ``ts + method + path`` with the key's private half."""
    try:
        sig = base64.b64decode(signature_b64, validate=True)
        public_key.verify(sig, f"{ts_ms}{method}{path}".encode(), _pss(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True
