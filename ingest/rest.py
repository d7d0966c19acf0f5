"""REST discovery client: ``GET /markets`` with cursor paging (stdlib urllib, run in a worker thread).

Why urllib: discovery is a few requests per minute (pages of 1000 markets), so an async HTTP client buys
nothing and would be one more dependency; each call runs in ``asyncio.to_thread`` and never blocks the
event loop. Responses are decoded with msgspec into :class:`ingest.registry.RestPage`.

Every way a request can fail -- refused or reset connections, timeouts, HTTP error statuses, a body cut short
(``http.client.IncompleteRead``), a malformed status line, an undecodable or mistyped body -- raises
:class:`DiscoveryError`, the one exception the gatherer's REST loops expect.
"""

from __future__ import annotations

import http.client
import urllib.parse
import urllib.request
from urllib.parse import urlsplit

import msgspec

from ingest.registry import RestPage
from ingest.venues.kalshi.auth import Signer

__all__ = ["DiscoveryError", "fetch_markets_page"]

_page = msgspec.json.Decoder(RestPage)


class DiscoveryError(Exception):
    """A discovery request failed (network, HTTP status, or an unparseable body)."""


def fetch_markets_page(
    rest_url: str,
    *,
    status: str = "open",
    cursor: str = "",
    limit: int = 1000,
    tickers: list[str] | None = None,
    signer: Signer | None = None,
    timeout: float = 30.0,
) -> RestPage:
    """One page of ``GET {rest_url}/markets`` (blocking)."""
    query: dict[str, str] = {"limit": str(limit)}
    if status:
        query["status"] = status
    if cursor:
        query["cursor"] = cursor
    if tickers:
        query["tickers"] = ",".join(tickers)
    url = f"{rest_url.rstrip('/')}/markets?{urllib.parse.urlencode(query)}"
    headers = {"Accept": "application/json"}
    if signer is not None:
        headers.update(signer.headers(method="GET", path=urlsplit(url).path))
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
    except (OSError, http.client.HTTPException, ValueError) as exc:  # URLError/HTTPError are OSErrors
        raise DiscoveryError(f"GET {url}: {type(exc).__name__}: {exc}") from None
    try:
        return _page.decode(body)
    except msgspec.DecodeError as exc:
        raise DiscoveryError(f"GET {url}: bad body: {exc}") from None
