"""Prometheus plumbing shared by every stage.

Each stage declares its own metrics in ``<stage>/metrics.py`` named ``mdpipe_<stage>_<what>_<unit>``;
this module only starts the HTTP exporter (``/metrics`` plus ``/healthz``) for a long-running command.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

__all__ = ["MetricsServer", "registered_stages", "start_metrics_server"]


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

        self._server = ThreadingHTTPServer((host, port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _stages_dir() -> Path:
    from mdpipe.config import run_dir

    return run_dir() / "stages"


def start_metrics_server(
    port: int, health: Callable[[], bool] | None = None, stage: str | None = None
) -> MetricsServer:
    """Start the exporter on ``port`` (0 = a free port; read ``.port``).

    With ``stage`` (e.g. ``gather-g1``), the address is also written to ``.run/stages/<stage>.json``
    so that `mdpipe status` and `make demo` find every running stage without flags.
    """
    server = MetricsServer(port, health)
    if stage:
        folder = _stages_dir()
        folder.mkdir(parents=True, exist_ok=True)
        record = {
            "stage": stage,
            "pid": os.getpid(),
            "metrics_url": f"http://127.0.0.1:{server.port}/metrics",
            "health_url": f"http://127.0.0.1:{server.port}/healthz",
            "started": time.time(),
        }
        (folder / f"{stage}.json").write_text(json.dumps(record))
    return server


def registered_stages() -> list[dict[str, object]]:
    """Stages that announced themselves (and whose process is still alive)."""
    out = []
    for path in sorted(_stages_dir().glob("*.json")):
        try:
            record = json.loads(path.read_text())
            os.kill(int(record["pid"]), 0)
        except (OSError, ValueError, KeyError):
            continue
        out.append(record)
    return out
