"""REST client of the gatherer: paced, 429-aware ``GET`` of the URLs a venue's discovery asks for (stdlib urllib,
run in a worker thread). The venue builds the URLs and parses the bodies (:meth:`venues.interface.Venue.discovery`).

Why urllib: discovery is a few requests per minute (pages of hundreds of markets), so an async HTTP client buys
nothing and would be one more dependency; each call runs in ``asyncio.to_thread`` and never blocks the
event loop.

Every way a request can fail -- refused or reset connections, timeouts, HTTP error statuses, a body cut short
(``http.client.IncompleteRead``), a malformed status line, an undecodable or mistyped body, an untrusted TLS
certificate -- raises :class:`DiscoveryError` (``status`` = the HTTP status when there was one), the one exception
the gatherer's REST loops expect. HTTP 429 raises :class:`RateLimited` carrying the ``Retry-After`` delay if any.

:class:`RestClient` is the one way the gatherer calls REST (discovery listings, their look-ups by ticker, and the
lifecycle refresh share it): every request first takes a slot of one :class:`ingest.ratelimit.RequestPacer`
(``gather.rest_requests_per_s``, bursts of one second's worth). A 429 pauses the whole client -- ``Retry-After``
when the venue sends one (seconds or HTTP date), else exponential backoff with jitter (0.5-1 s, then 1-2 s, 2-4 s,
... up to 30 s; reset by the next success) -- and the request is retried after the pause; after
``max_attempts`` answers of 429 in a row it raises :class:`RateLimited` to its caller. Metrics:
``mdpipe_gather_rest_requests_total{purpose}``, ``mdpipe_gather_rest_rate_limited_total``,
``mdpipe_gather_rest_wait_seconds_total{reason=pace|backoff}``.
"""

from __future__ import annotations

import asyncio
import functools
import http.client
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ingest import metrics as m
from ingest.backoff import backoff
from ingest.ratelimit import RequestPacer, retry_after_s
from ingest.tls import client_context, report_untrusted, untrusted
from mdpipe.logging import get_logger
from venues.interface import Signer

__all__ = ["DiscoveryError", "RateLimited", "RestClient", "cursor_of", "fetch_body"]

log = get_logger(__name__)

MAX_RETRY_AFTER_S = 300.0  # a Retry-After beyond this is read as this (a typo must not stall discovery for a day)


class DiscoveryError(Exception):
    """A discovery request failed (network, HTTP status, TLS, or an unparseable body)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def cursor_of(url: str) -> str:
    """The paging cursor a request URL carries: the value of its query parameter ``cursor`` (or ``*_cursor``,
    ``*cursor``, e.g. ``next_cursor``), "" for a first page or a look-up."""
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        if name.lower().endswith("cursor"):
            return value
    return ""


class RateLimited(DiscoveryError):
    """The venue answered HTTP 429; ``retry_after`` = seconds its ``Retry-After`` asked for (None: no header)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, status=429)
        self.retry_after = retry_after


def fetch_body(
    url: str,
    *,
    signer: Signer | None = None,
    timeout: float = 30.0,
    context: ssl.SSLContext | None = None,
    ca_file: str = "",
) -> bytes:
    """The body of ``GET url`` (blocking), signed by ``signer``; :class:`RateLimited` on 429, :class:`DiscoveryError`
    on any other failure. ``context`` verifies ``https://`` (default: system)."""
    headers = {"Accept": "application/json"}
    if signer is not None:
        headers.update(signer.headers(method="GET", path=urlsplit(url).path))
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 429:
            wait = retry_after_s(exc.headers.get("Retry-After") if exc.headers else None, time.time())
            raise RateLimited(f"GET {url}: HTTP 429 Too Many Requests", retry_after=wait) from None
        raise DiscoveryError(f"GET {url}: HTTP {exc.code} {exc.reason}", status=exc.code) from None
    except (OSError, http.client.HTTPException, ValueError) as exc:  # URLError is an OSError
        error = untrusted(exc)
        if error is not None:
            report_untrusted(url, ca_file, error, "rest")
            message = getattr(error, "verify_message", "") or str(error)
            raise DiscoveryError(f"GET {url}: TLS: venue certificate not trusted ({message})") from None
        raise DiscoveryError(f"GET {url}: {type(exc).__name__}: {exc}") from None


class RestClient:
    """Paced, 429-aware ``GET`` for one gatherer (see module docstring)."""

    def __init__(
        self,
        *,
        gatherer: str,
        requests_per_s: float,
        signer: Signer | None = None,
        ca_file: str = "",
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 30.0,
        max_attempts: int = 8,
        timeout: float = 30.0,
    ) -> None:
        self.gatherer = gatherer
        self.pacer = RequestPacer(requests_per_s)
        self.signer = signer
        self.ca_file = ca_file
        self._context: ssl.SSLContext | None = None
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = max(backoff_initial_s, backoff_max_s)
        self.max_attempts = max_attempts
        self.timeout = timeout
        self._delays: Iterator[float] | None = None  # the current run of bare 429s (None: last answer was not 429)
        self.requests = 0
        self.rate_limited = 0
        self.waited_s = {"pace": 0.0, "backoff": 0.0}
        self._m_429 = m.REST_RATE_LIMITED.labels(gatherer)
        self._m_wait = {reason: m.REST_WAIT.labels(gatherer, reason) for reason in self.waited_s}

    def context(self, url: str) -> ssl.SSLContext | None:
        """The TLS context for ``https://`` URLs (built once: ``ca_file`` or the system store)."""
        if not url.startswith("https://"):
            return None
        if self._context is None:
            self._context = client_context(self.ca_file)
        return self._context

    async def _slot(self) -> None:
        """Wait for this request's turn: the pace, and any 429 pause that began meanwhile."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            wait = self.pacer.reserve(now)
            if wait > 0:
                held = min(wait, self.pacer.held(now))
                self._waited("backoff", held)
                self._waited("pace", wait - held)
                await asyncio.sleep(wait)
            if self.pacer.held(loop.time()) <= 0.001:
                return

    def _waited(self, reason: str, seconds: float) -> None:
        if seconds > 0:
            self.waited_s[reason] += seconds
            self._m_wait[reason].inc(seconds)

    async def get(self, url: str, *, purpose: str) -> bytes:
        """The body of ``GET url`` within the request rate, retried after 429 pauses (``purpose`` labels the request
        metric: listing, lookup or refresh)."""
        fetch = functools.partial(
            fetch_body, url, signer=self.signer, timeout=self.timeout, context=self.context(url), ca_file=self.ca_file
        )
        body: bytes = await self._paced(fetch, purpose=purpose, cursor=cursor_of(url))
        return body

    async def _paced(self, fetch: Callable[[], Any], *, purpose: str, cursor: str) -> Any:
        """``fetch()`` in a thread at this client's pace, retried after 429 pauses."""
        loop = asyncio.get_running_loop()
        attempts = 0
        while True:
            await self._slot()
            self.requests += 1
            m.REST_REQUESTS.labels(self.gatherer, purpose).inc()
            try:
                result = await asyncio.to_thread(fetch)
            except RateLimited as exc:
                attempts += 1
                self.rate_limited += 1
                self._m_429.inc()
                if exc.retry_after is not None:
                    pause, source = min(exc.retry_after, MAX_RETRY_AFTER_S), "retry_after"
                else:
                    if self._delays is None:
                        self._delays = backoff(self.backoff_initial_s, self.backoff_max_s)
                    pause, source = next(self._delays), "backoff"
                self.pacer.hold(loop.time() + pause)
                log.warning(
                    "rest_rate_limited",
                    gatherer=self.gatherer,
                    purpose=purpose,
                    pause_s=round(pause, 3),
                    pause_from=source,
                    attempt=attempts,
                    cursor=cursor[:200],
                )
                if attempts >= self.max_attempts:
                    raise
                continue
            self._delays = None
            return result
