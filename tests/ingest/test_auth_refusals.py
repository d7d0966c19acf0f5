"""When refused credentials make a gatherer give up (ingest.auth_refusals): the policy, and reading the venue's answer
from the real clients' exceptions."""

from __future__ import annotations

import io
import urllib.error

from hypothesis import given
from hypothesis import strategies as st

from ingest.auth_refusals import MIN_REFUSALS, START_GRACE_S, AuthRefusals, http_status, refusal_detail
from ingest.rest import DiscoveryError

DETAIL = "HTTP 401 authentication_error: unknown key"


def test_never_accepted_gives_up_after_three_refusals_lasting_the_start_grace() -> None:
    auth = AuthRefusals(limit_s=120.0)
    for t in (0.0, 0.5, 1.5):
        auth.refused("websocket", t, DETAIL)
    assert auth.verdict(START_GRACE_S - 0.1, streaming=False) is None  # three, but not yet for 5 s
    why = auth.verdict(START_GRACE_S, streaming=False)
    assert why is not None and "3 websocket requests in a row" in why and DETAIL in why


def test_two_refusals_are_not_enough_however_long() -> None:
    auth = AuthRefusals()
    auth.refused("websocket", 0.0, DETAIL)
    auth.refused("websocket", 1.0, DETAIL)
    assert auth.verdict(10_000.0, streaming=False) is None


def test_once_accepted_refusals_must_last_the_limit() -> None:
    auth = AuthRefusals(limit_s=120.0)
    auth.accepted("websocket")
    for t in (0.0, 10.0, 30.0, 60.0):
        auth.refused("websocket", t, DETAIL)
    assert auth.verdict(119.0, streaming=False) is None  # a hiccup of the venue's auth is ridden out
    assert auth.verdict(120.0, streaming=False) is not None


def test_an_accepted_request_starts_the_count_again() -> None:
    auth = AuthRefusals()
    for t in (0.0, 1.0, 2.0):
        auth.refused("websocket", t, DETAIL)
    auth.accepted("websocket")
    auth.refused("websocket", 3.0, DETAIL)
    assert auth.verdict(1000.0, streaming=False) is None


def test_rest_success_does_not_excuse_refused_upgrades() -> None:
    # the real venue's market listings are public: REST answering says nothing about the key the upgrade carries
    auth = AuthRefusals()
    for t in (0.0, 1.0, 2.0):
        auth.refused("websocket", t, DETAIL)
        auth.accepted("rest")
    assert auth.verdict(6.0, streaming=False) is not None


@given(st.lists(st.floats(min_value=0, max_value=1e5), min_size=MIN_REFUSALS, max_size=30), st.floats(0, 2e5))
def test_never_gives_up_while_something_streams(times: list[float], now: float) -> None:
    auth = AuthRefusals(limit_s=1.0)
    for t in sorted(times):
        auth.refused("websocket", t, DETAIL)
        auth.refused("rest", t, DETAIL)
    assert auth.verdict(now, streaming=True) is None


def test_status_and_detail_from_picows_and_websockets_refusals() -> None:
    from picows import WSUpgradeResponse
    from picows.common import WSInvalidStatusError

    body = b'{"error":{"code":"authentication_error","message":"unknown key"}}'
    response = WSUpgradeResponse.create_error_response(401, body)
    picows_exc = WSInvalidStatusError("received 401", b"HTTP/1.1 401 Unauthorized", body, response)
    assert http_status(picows_exc) == 401
    assert refusal_detail(picows_exc, 401) == DETAIL

    from websockets.datastructures import Headers
    from websockets.exceptions import InvalidStatus
    from websockets.http11 import Response

    ws_exc = InvalidStatus(Response(403, "Forbidden", Headers(), body))
    assert http_status(ws_exc) == 403
    assert refusal_detail(ws_exc, 403) == "HTTP 403 authentication_error: unknown key"


def test_status_of_a_rest_refusal_through_discovery_error() -> None:
    http = urllib.error.HTTPError("http://v/markets", 401, "Unauthorized", {}, io.BytesIO(b'{"error":"nope"}'))  # type: ignore[arg-type]
    try:
        try:
            raise http
        except OSError as exc:
            raise DiscoveryError(f"GET http://v/markets: {exc}") from None  # as ingest.rest does
    except DiscoveryError as wrapped:
        assert http_status(wrapped) == 401
        assert refusal_detail(wrapped, 401).startswith("HTTP 401")
    assert http_status(DiscoveryError("timed out")) is None
    assert http_status(None) is None
