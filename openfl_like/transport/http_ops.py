"""The operations HTTP port: ``/metrics`` (Prometheus), ``/healthz`` and ``/readyz``.

For scrapers and orchestrators that cannot present a client certificate. It is plain,
unauthenticated HTTP, so it listens on 127.0.0.1 unless told otherwise; another address is
logged as a WARNING. ``/healthz`` answers 200 while the process lives (a thread of it serves
the request); ``/readyz`` answers 200 when the ``ready`` callable says so (an aggregator: serving
rounds, not resuming, stopping or finished) and 503 otherwise. Anything else is 404.

It is prometheus-client's WSGI app (``make_wsgi_app``) on the standard library's ``wsgiref``
server, one thread per request, in a daemon thread; ``stop()`` closes the socket and joins it.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from openfl_like.core.errors import ConfigError
from openfl_like.core.logging import get_logger

log = get_logger(__name__)

LOOPBACK = "127.0.0.1"
StartResponse = Callable[..., Any]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: Prometheus scrapes every few seconds."""

    def log_message(self, format: str, *args: Any) -> None:
        return


def ops_app(registry: CollectorRegistry, ready: Callable[[], bool]
            ) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """The WSGI application of the module docstring."""
    metrics = make_wsgi_app(registry)

    def plain(start_response: StartResponse, status: str, body: str) -> list[bytes]:
        data = body.encode()
        start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                                ("Content-Length", str(len(data)))])
        return [data]

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == "/metrics":
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            return plain(start_response, "200 OK", "ok\n")
        if path == "/readyz":
            try:
                is_ready = bool(ready())
            except Exception:
                log.exception("the readiness check failed")
                is_ready = False
            if is_ready:
                return plain(start_response, "200 OK", "ready\n")
            return plain(start_response, "503 Service Unavailable", "not ready\n")
        return plain(start_response, "404 Not Found",
                     "not found: /metrics, /healthz and /readyz are served here\n")

    return app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class OpsServer:
    """``/metrics``, ``/healthz``, ``/readyz`` on ``host:port`` (0: a free port)."""

    def __init__(self, registry: CollectorRegistry, *, ready: Callable[[], bool],
                 host: str = LOOPBACK, port: int = 0, what: str = "process") -> None:
        self.host = host
        cls = _Server6 if ":" in host else _Server
        try:
            self._server = make_server(host, port, ops_app(registry, ready), server_class=cls,
                                       handler_class=_QuietHandler)
        except OSError as exc:
            raise ConfigError(f"metrics port {host}:{port}: {exc.strerror or exc} (set "
                              "network.metrics_port, --metrics-port or FX_METRICS_PORT to a "
                              "free port)") from None
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.2}, daemon=True,
                                        name=f"ops-http-{self.port}")
        self._thread.start()
        shown = f"[{host}]" if ":" in host else host
        if not is_loopback(host):
            log.warning("%s metrics and health on http://%s:%d are UNAUTHENTICATED: anyone who "
                        "can reach this address reads them (restrict it with a firewall)",
                        what, shown, self.port)
        log.info("%s metrics on http://%s:%d/metrics (health: /healthz, /readyz)", what, shown,
                 self.port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(5.0)
        self._server.server_close()


def start_ops_server(registry: CollectorRegistry, *, ready: Callable[[], bool],
                     port: int | None, host: str = LOOPBACK,
                     what: str = "process") -> OpsServer | None:
    """An ``OpsServer``, or None when ``port`` is None (metrics off)."""
    if port is None:
        return None
    return OpsServer(registry, ready=ready, host=host or LOOPBACK, port=port, what=what)
