"""One small HTTP port for Kubernetes probes and Prometheus (default 9808).

* ``GET /livez``   200 while the engine's event loop ticked within ``stale_after_s``, else 503.
  It reads only :class:`WorkerState` and never touches the broker, so a slow broker cannot get
  a healthy pod killed; a wedged loop does.
* ``GET /readyz``  200 while the consumer is attached to the broker, else 503.
* ``GET /metrics`` the worker's Prometheus registry in text format.

The server runs in daemon threads (stdlib ``ThreadingHTTPServer``), so a slow scraper never
blocks the worker.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from celeriac.worker.metrics import CONTENT_TYPE
from celeriac.worker.state import WorkerState

DEFAULT_PORT = 9808
DEFAULT_STALE_AFTER_S = 60.0
"""How old the last event-loop tick may be before ``/livez`` fails (seconds)."""


class HealthServer:
    """Serves ``/livez``, ``/readyz`` and ``/metrics`` for one :class:`WorkerState`.

    ``port=0`` picks a free port (read it back from :attr:`port` after :meth:`start`).
    ``host`` defaults to all interfaces, as a pod's probes come from the kubelet.
    """

    def __init__(
        self,
        state: WorkerState,
        port: int = DEFAULT_PORT,
        host: str = "0.0.0.0",
        stale_after_s: float = DEFAULT_STALE_AFTER_S,
    ) -> None:
        self.state = state
        self.host = host
        self.stale_after_s = stale_after_s
        self._requested_port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the requested one until :meth:`start`)."""
        if self._server is None:
            return self._requested_port
        return int(self._server.server_address[1])

    def start(self) -> None:
        handler = _handler_for(self)
        self._server = ThreadingHTTPServer((self.host, self._requested_port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
            name="celeriac-health", daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> HealthServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def respond(self, path: str) -> tuple[int, str, bytes]:
        """``(status, content type, body)`` for ``path``; pure, so it is easy to reason about."""
        route = path.split("?", 1)[0]
        if route == "/livez":
            if self.state.is_alive(self.stale_after_s):
                return 200, "text/plain; charset=utf-8", b"ok\n"
            age_s = self.state.seconds_since_tick()
            return 503, "text/plain; charset=utf-8", f"event loop stalled for {age_s:.1f}s\n".encode()
        if route == "/readyz":
            if self.state.is_ready():
                return 200, "text/plain; charset=utf-8", b"ok\n"
            return 503, "text/plain; charset=utf-8", b"consumer not attached\n"
        if route == "/metrics":
            return 200, CONTENT_TYPE, self.state.metrics.render()
        return 404, "text/plain; charset=utf-8", b"not found; try /livez, /readyz or /metrics\n"


def _handler_for(server: HealthServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, content_type, body = server.respond(self.path)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Probes every few seconds would flood the worker log; stay quiet."""

    return Handler
