"""The emulator's server hosts whatever venue profile it is given (no sockets): the profile's REST handler under its
REST base (400 on ValueError, 404 on no route, the failpage fault asked through ``SimServer.fail_page``), its
signed upgrade's header names and WebSocket path, and no server without a profile."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from websockets.datastructures import Headers
from websockets.http11 import Request

from venue_sim.book import Books
from venue_sim.keys import generate_test_keypair, load_public_key, sign
from venue_sim.markets import MarketTable
from venue_sim.server import ServerSettings, SimConnection, SimServer

WS_PATH = "/toy/ws"
AUTH = ("X-Toy-Key", "X-Toy-Time", "X-Toy-Sig")


async def _admin(method: str, path: str, payload: dict[str, Any]) -> tuple[int, Any]:
    return 404, {}


class ToyRest:
    """A venue's REST handler: ``/toy/api/page`` fails while the failpage fault is armed, ``/toy/api/bad`` raises."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, path: str, query: dict[str, str], venue: Any) -> tuple[int, Any] | None:
        if path == "/toy/api/page":
            self.asked.append(query.get("after", ""))
            if venue.fail_page(query.get("after", "")):
                return 503, {"failed": True}
            return 200, {"page": query.get("after", ""), "clock": venue.venue_ms()}
        if path == "/toy/api/bad":
            raise ValueError("no such thing")
        return None


def _server(settings: ServerSettings | None = None, auth_headers: tuple[str, ...] = AUTH, **kw: Any) -> SimServer:
    table = MarketTable(3, 1, 1_700_000_000_000)
    return SimServer(
        settings or ServerSettings(),
        table,
        Books(1),
        _admin,
        venue_ms=lambda: 1234,
        session_factory=lambda conn_id: object(),
        ws_path=WS_PATH,
        rest_base="/toy/api",
        rest_handler=ToyRest(),
        rest_routes={"/toy/exact": lambda q: b'{"exact":1}'},
        auth_headers=auth_headers,
        **kw,
    )


def test_a_server_needs_a_venue_profile() -> None:
    with pytest.raises(ValueError, match="session_factory and ws_path"):
        SimServer(ServerSettings(), MarketTable(1, 1, 0), Books(1), _admin)


def test_rest_goes_to_the_profiles_routes_and_handler() -> None:
    server = _server()
    ok = server._rest("c", "/toy/api/page", {"after": "5"})
    assert (ok.status_code, ok.body) == (200, b'{"page":"5","clock":1234}')
    assert server._rest("c", "/toy/exact", {}).body == b'{"exact":1}'
    bad = server._rest("c", "/toy/api/bad", {})
    assert bad.status_code == 400 and b"no such thing" in bad.body
    assert server._rest("c", "/toy/api/elsewhere", {}).status_code == 404
    server.fail_pages = 2  # the failpage fault armed for two pages
    codes = [server._rest("c", "/toy/api/page", {"after": str(i)}).status_code for i in range(3)]
    assert codes == [503, 503, 200] and server.failed_pages == 2 and server.fail_pages == 0


def _upgrade(headers: dict[str, str]) -> Request:
    return Request(WS_PATH, Headers(list(headers.items())))


def test_the_upgrade_is_signed_with_the_profiles_headers_and_path(tmp_path: Path) -> None:
    keys = generate_test_keypair(tmp_path, bits=1024)
    settings = ServerSettings(auth=True, public_key=load_public_key(keys.public_key_pem), key_id=keys.key_id)
    server = _server(settings)
    ts = str(int(time.time() * 1000))
    signed = {AUTH[0]: keys.key_id, AUTH[1]: ts, AUTH[2]: sign(keys.private_key_pem, ts, "GET", WS_PATH)}
    assert server._check_upgrade(_upgrade(signed)) is None
    elsewhere = {**signed, AUTH[2]: sign(keys.private_key_pem, ts, "GET", "/another/path")}
    answers = [server._check_upgrade(_upgrade(h)) for h in (elsewhere, {}, {**signed, AUTH[0]: "someone"})]
    assert [a.status_code if a is not None else 200 for a in answers] == [401, 401, 401]
    assert [a.body for a in answers if a is not None] == [
        b'{"error":{"code":"authentication_error","message":"bad signature"}}',
        b'{"error":{"code":"authentication_error","message":"missing authentication headers"}}',
        b'{"error":{"code":"authentication_error","message":"unknown key"}}',
    ]
    assert server.auth_failures == 3
    unsigned = _server(settings, auth_headers=())  # a venue that signs nothing: with auth on, nothing passes
    assert unsigned._check_upgrade(_upgrade(signed)).status_code == 401  # type: ignore[union-attr]


def test_connection_stats_of_a_session_without_subscription_ids() -> None:
    session = SimpleNamespace(data_messages=3, suppressed=1, frozen=False, redelivered=0)  # the fields faults need
    ws = SimpleNamespace(remote_address=("127.0.0.1", 5000))
    stats = SimConnection(7, ws, session).stats()  # type: ignore[arg-type]
    assert (stats["conn_id"], stats["data_messages"], stats["subscriptions"], stats["overflowed_sids"]) == (7, 3, 0, 0)
