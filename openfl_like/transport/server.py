"""Start and stop a gRPC server: ``serve(...)`` yields a :class:`RunningServer` with its port.

A synchronous ``grpc.server`` on a thread pool: each parked long-poll holds one worker thread,
so ``server_workers`` (default 1280) bounds how many collaborators can wait at once, and when all
workers are parked every other call queues behind them. Python starts pool threads only when a
call finds none idle; a parked one costs ~40 KB RSS. Measured by bench/bench_longpoll.py: 1000
parked mutual-TLS collaborators in ~200 MB RSS, all released in ~1 s; see
``TransportSettings.server_workers``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass

import grpc

from openfl_like.core.errors import ConfigError
from openfl_like.core.logging import get_logger
from openfl_like.transport.health import HealthState
from openfl_like.transport.memory import limit_malloc_arenas
from openfl_like.transport.settings import TransportSettings

_log = get_logger(__name__)

INSECURE_WARNING = (
    "TLS IS OFF: traffic is unencrypted and callers are not authenticated; the server trusts "
    "the sender named in each request header. Use only for local experiments."
)


def server_options(settings: TransportSettings) -> list[tuple[str, int]]:
    keepalive = settings.keepalive
    return [
        ("grpc.max_receive_message_length", settings.max_receive_bytes),
        ("grpc.max_send_message_length", settings.max_receive_bytes),
        ("grpc.keepalive_time_ms", int(keepalive.time_seconds * 1000)),
        ("grpc.keepalive_timeout_ms", int(keepalive.timeout_seconds * 1000)),
        ("grpc.keepalive_permit_without_calls", int(keepalive.permit_without_calls)),
        # accept the clients' keepalive pings at the rate we configure them
        ("grpc.http2.min_recv_ping_interval_without_data_ms",
         int(keepalive.time_seconds * 1000 // 2)),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.so_reuseport", 0),  # a second server on the same port must fail, not share it
    ]  # fmt: skip


@dataclass
class RunningServer:
    """A started server: where it listens, and how to stop it."""

    server: grpc.Server
    host: str
    port: int
    health: HealthState | None = None  # grpc.health.v1 on this port (transport.health)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self, grace: float | None = 1.0) -> None:
        """Report NOT_SERVING (to health watchers too), refuse new calls, give running ones
        ``grace`` seconds, then cancel them."""
        if self.health is not None:
            self.health.shut_down()
        self.server.stop(grace).wait()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server stops (True) or ``timeout`` passes (False)."""
        return bool(self.server.wait_for_termination(timeout))


def start_server(
    handlers: Sequence[grpc.GenericRpcHandler],
    *,
    settings: TransportSettings,
    credentials: grpc.ServerCredentials | None,
    host: str = "127.0.0.1",
    port: int = 0,
    health: HealthState | None = None,
    options: Sequence[tuple[str, int | str]] | None = None,
    maximum_concurrent_rpcs: int | None = None,
) -> RunningServer:
    """Bind and start; ``port=0`` picks a free port (see ``RunningServer.port``).

    ``health``: also serve grpc.health.v1 from it (same port, same mutual TLS). ``options``
    replaces :func:`server_options` (a server with its own limits); ``maximum_concurrent_rpcs``
    bounds running plus queued calls (grpc refuses more with RESOURCE_EXHAUSTED).
    """
    if credentials is None and settings.tls:
        raise ConfigError("TLS is on but no server credentials were given")
    limit_malloc_arenas()  # see transport.memory
    server = grpc.server(
        futures.ThreadPoolExecutor(
            max_workers=settings.server_workers, thread_name_prefix="fx-grpc"
        ),
        handlers=handlers,
        options=list(options) if options is not None else server_options(settings),
        maximum_concurrent_rpcs=maximum_concurrent_rpcs,
    )
    if health is not None:
        health.add_to(server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        if credentials is None:
            _log.warning(INSECURE_WARNING)
            bound = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, credentials)
    except RuntimeError as exc:  # grpc raises RuntimeError when it cannot bind
        bound = 0
        reason = str(exc)
    else:
        reason = "address in use or not available"
    if not bound:
        server.stop(None)
        raise ConfigError(f"cannot listen on {address}: {reason}")
    server.start()
    _log.info("listening on %s:%d (%s)", host, bound, "mutual TLS" if credentials else "NO TLS")
    return RunningServer(server, host, bound, health)


@contextmanager
def serve(
    handlers: Sequence[grpc.GenericRpcHandler],
    *,
    settings: TransportSettings,
    credentials: grpc.ServerCredentials | None,
    host: str = "127.0.0.1",
    port: int = 0,
    grace: float | None = 1.0,
    health: HealthState | None = None,
) -> Iterator[RunningServer]:
    """Context manager around :func:`start_server`; the server stops when the block exits."""
    running = start_server(
        handlers, settings=settings, credentials=credentials, host=host, port=port,
        health=health,
    )
    try:
        yield running
    finally:
        running.stop(grace)
