"""Prometheus plumbing shared by every stage.

Each stage declares its own metrics in ``<stage>/metrics.py`` named ``mdpipe_<stage>_<what>_<unit>``;
this module only starts the HTTP exporter (``/metrics`` plus ``/healthz``) for a long-running command, on the
stage's ``metrics_host`` (bind address) and ``metrics_port`` (see docs/operations-observability.md).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from mdpipe.stage_announce import announce

__all__ = ["MetricsServer", "local_url_host", "start_metrics_server"]


class MetricsServer:
    """`/metrics` (Prometheus text format) and `/healthz` (200 when ``health()`` is true, else 503)."""

    def __init__(self, port: int, health: Callable[[], bool] | None = None, host: str = "127.0.0.1") -> None:
        self._health = health or (lambda: True)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/metrics"):
                    body, ctype, code = generate_latest(REGISTRY), CONTENT_TYPE_LATEST, 200
                elif self.path.startswith("/healthz"):
                    ok = outer._health()
                    body, ctype, code = (b"ok\n" if ok else b"unhealthy\n"), "text/plain", 200 if ok else 503
                else:
                    body, ctype, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        server_class = _IPv6HTTPServer if ":" in host else ThreadingHTTPServer
        self._server = server_class((host, port), Handler)
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _IPv6HTTPServer(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def local_url_host(bind_host: str) -> str:
    """The host part of a URL that reaches a server bound to ``bind_host`` from this machine: the loopback address
    for the wildcard binds (0.0.0.0, ::), the address itself otherwise (bracketed when IPv6)."""
    if bind_host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if bind_host == "::":
        return "[::1]"
    return f"[{bind_host}]" if ":" in bind_host else bind_host


def start_metrics_server(
    port: int,
    health: Callable[[], bool] | None = None,
    stage: str | None = None,
    host: str = "127.0.0.1",
    setting: str = "metrics_port",
) -> MetricsServer:
    """Start the exporter on ``host``:``port`` (0 = a free port; read ``.port``).

    A port that cannot be bound (in use, not allowed) or an address this host does not have raises
    :class:`~mdpipe.config.ConfigError` naming ``setting`` (e.g. ``dedup.metrics_port``): one line, exit status 2.
    With ``stage`` (e.g. ``gather-g1``), the address is also written to ``.run/stages/<stage>.json``
    so that `mdpipe status` and `make demo` find every running stage without flags.
    """
    from mdpipe.config import ConfigError

    try:
        server = MetricsServer(port, health, host=host)
    except OSError as exc:
        section = setting.rsplit(".", 1)[0] + "." if "." in setting else ""
        raise ConfigError(
            f"config setting {setting}: cannot serve metrics on {host}:{port} ({exc.strerror or exc}); another "
            f"process may hold the port: choose another with --metrics-port or {setting} (0 = any free port), "
            f"or check {section}metrics_host"
        ) from None
    if stage:
        url = f"http://{local_url_host(host)}:{server.port}"
        announce(stage, metrics_url=f"{url}/metrics", health_url=f"{url}/healthz", bind=f"{host}:{server.port}")
    return server
