"""grpc.health.v1 on a server's own port: grpcio-health-checking's ``HealthServicer``, switched as
one.

The overall service ("") and every service the server names report the same state: SERVING once
the process serves work, NOT_SERVING before that (starting, resuming saved state) and from the
moment it begins to shut down. ``HealthServicer.set`` pushes each change to every open ``Watch``
stream, and its non-blocking ``Watch`` holds no worker thread while it waits. The health RPCs sit
on the same server, so the TLS handshake authenticates the caller as for every other call (any
certificate of our CA); they carry no header and need no role. :meth:`HealthState.is_serving`
is the same answer for plain callers (an HTTP ``/readyz``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

HEALTH_SERVICE = health.SERVICE_NAME  # "grpc.health.v1.Health"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthState:
    """The health of one server: ``services`` (plus "" and the health service itself)."""

    def __init__(self, services: Iterable[str], *, serving: bool = False) -> None:
        self.services = tuple(dict.fromkeys(["", *services, HEALTH_SERVICE]))
        self.servicer = health.HealthServicer()
        self._lock = threading.Lock()
        self._serving = not serving  # so that the first _set() below applies
        self._final = False
        self._set(serving)

    def add_to(self, server: grpc.Server) -> None:
        """Register the Health service on ``server`` (before it starts)."""
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)

    def is_serving(self) -> bool:
        """True while every service reports SERVING."""
        with self._lock:
            return self._serving

    def set_serving(self) -> None:
        """Ready for work; ignored once :meth:`shut_down` was called."""
        self._set(True)

    def set_not_serving(self) -> None:
        """Not ready now (e.g. resuming); :meth:`set_serving` may follow."""
        self._set(False)

    def shut_down(self) -> None:
        """NOT_SERVING for good: the server is stopping; later calls change nothing."""
        self._set(False)
        with self._lock:
            self._final = True

    def _set(self, serving: bool) -> None:
        with self._lock:
            if self._final or serving == self._serving:
                return
            self._serving = serving
            status = SERVING if serving else NOT_SERVING
            for service in self.services:  # each set() tells that service's watchers
                self.servicer.set(service, status)


__all__ = ["HEALTH_SERVICE", "NOT_SERVING", "SERVING", "HealthState"]
