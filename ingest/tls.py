"""TLS trust for the gatherer's venue clients (WebSocket over picows or websockets, and REST).

``venue.ca_file`` empty (the default, what the real venue needs): the system's trust store. Set: only that CA
file (PEM) is trusted, e.g. the emulator's generated CA (``mdpipe sim --tls`` prints it). Hostnames are always
checked. A venue certificate the trust store does not vouch for is reported by :func:`report_untrusted` as one
``venue_tls_untrusted`` error line per venue address (host:port) and CA file, whichever client meets it first
(WebSocket or REST; the clients keep retrying with backoff, as for any connection failure, and their retry lines
carry the short reason).
"""

from __future__ import annotations

import ssl
import threading
from urllib.parse import urlsplit

from mdpipe.logging import get_logger

__all__ = ["client_context", "report_untrusted", "untrusted"]

log = get_logger(__name__)

_reported: set[tuple[str, str]] = set()
_lock = threading.Lock()


def client_context(ca_file: str = "") -> ssl.SSLContext:
    """A client context verifying the venue's certificate and hostname against ``ca_file`` or the system store.

    Raises ValueError naming ``venue.ca_file`` when the file cannot be read or holds no certificate."""
    try:
        return ssl.create_default_context(cafile=ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"venue.ca_file {ca_file!r}: cannot load a CA certificate ({exc})") from None


def untrusted(exc: BaseException | None) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure inside ``exc`` (its cause/context chain or ``URLError.reason``)."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return exc
        reason = getattr(exc, "reason", None)
        if isinstance(reason, ssl.SSLCertVerificationError):
            return reason
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def report_untrusted(url: str, ca_file: str, error: ssl.SSLCertVerificationError, client: str) -> bool:
    """Log that ``url``'s certificate is not trusted: once per (host:port, ca_file); True if logged now."""
    parts = urlsplit(url)
    where = parts.netloc
    with _lock:
        if (where, ca_file) in _reported:
            return False
        _reported.add((where, ca_file))
    log.error(
        "venue_tls_untrusted",
        venue=where,
        via=f"{parts.scheme} ({client})",
        ca_file=ca_file or "(system trust store)",
        error=getattr(error, "verify_message", "") or str(error),
        hint="set venue.ca_file to the CA that signed the venue's certificate, or empty for the system store",
    )
    return True
