"""Composition root of the director: its config + PKI -> director logic behind a gRPC server.

``start_director`` returns a ``RunningDirector`` serving `DirectorGRPCServer` over mutual TLS with
the director's certificate (CN = ``director.name``); ``run()`` blocks until ``stop_requested`` is
set (SIGTERM/SIGINT in `fx director start`), then stops gracefully: envoys are told by a
broadcast, experiments' aggregators save their state (a restart resumes them), the registry is
closed.

With a metrics port (``network.metrics_port`` of director.yaml, ``FX_METRICS_PORT`` or
``metrics_port=``) it also serves ``/metrics``, ``/healthz`` and ``/readyz`` over HTTP
(``app.ops``, ``transport.director_metrics``); /readyz follows the gRPC health.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from openfl_like.app.ops import children_env, director_snapshot, start_director_ops
from openfl_like.app.settings import transport_mapping
from openfl_like.core.experiments import BroadcastKind
from openfl_like.core.logging import get_logger
from openfl_like.director.director import Director
from openfl_like.director.launcher import SubprocessLauncher
from openfl_like.pki import PkiStore
from openfl_like.plan.director_config import DirectorConfig
from openfl_like.transport.credentials import TlsFiles
from openfl_like.transport.director_metrics import DirectorMetrics
from openfl_like.transport.director_server import DirectorGRPCServer
from openfl_like.transport.health import HealthState
from openfl_like.transport.http_ops import OpsServer
from openfl_like.transport.server import RunningServer
from openfl_like.transport.settings import TransportSettings

log = get_logger(__name__)

SHUTDOWN_GRACE_SECONDS = 2.0


@dataclass
class RunningDirector:
    director: Director
    server: RunningServer
    config: DirectorConfig
    stop_requested: threading.Event = field(default_factory=threading.Event)
    metrics: DirectorMetrics | None = None
    ops: OpsServer | None = None

    @property
    def metrics_port(self) -> int | None:
        """The HTTP port of /metrics, /healthz and /readyz (None: off)."""
        return None if self.ops is None else self.ops.port

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def health(self) -> HealthState | None:
        """grpc.health.v1 of the director's port; ``health.is_serving()`` for plain probes."""
        return self.server.health

    def run(self) -> None:
        """Serve until ``stop_requested`` is set, then stop gracefully."""
        self.stop_requested.wait()
        self.stop()

    def stop(self, *, keep_ops: bool = False) -> None:
        """Stop gracefully; /readyz answers 503 from the start. ``keep_ops``: leave the HTTP
        ops port up (``close_ops`` ends it), for a caller that reads it after the stop."""
        try:
            self._stop()
        finally:
            if not keep_ops:
                self.close_ops()

    def close_ops(self) -> None:
        if self.ops is not None:
            self.ops.stop()
            self.ops = None

    def _stop(self) -> None:
        log.info("director %s stopping: telling the envoys, saving experiments",
                 self.config.director.name)
        if self.server.health is not None:
            self.server.health.shut_down()  # NOT_SERVING from now on, pushed to watchers
        # The broadcast wakes the parked WaitExperiment calls, which answer within the grace;
        # only then the registry closes (a call still running would find it closed).
        self.director.broadcast(BroadcastKind.SHUTDOWN, "the director is shutting down")
        self.server.stop(SHUTDOWN_GRACE_SECONDS)
        self.director.stop()


def start_director(config: DirectorConfig, *, pki: PkiStore, host: str | None = None,
                   port: int | None = None, metrics_port: int | None = None,
                   metrics_host: str | None = None) -> RunningDirector:
    """Open the registry, resume the experiments that were running, and start serving.

    ``metrics_port`` (0: a free one) overrides ``network.metrics_port``/``FX_METRICS_PORT``.
    """
    own = config.director
    settings = TransportSettings.from_mapping(transport_mapping(config.network))
    tls_files = None
    if settings.tls:
        tls_files = TlsFiles.for_participant(pki, own.name)
        tls_files.read()  # fail early, naming the missing file
    # FX_METRICS_PORT is this process's: the aggregators it launches must not all take it.
    env = children_env(os.environ)
    director = Director(config, pki_dir=Path(pki.root).resolve(),
                        launcher_factory=lambda: SubprocessLauncher(env=env))
    metrics, ops = start_director_ops(settings, metrics_port, metrics_host)
    try:
        server = DirectorGRPCServer(
            director, director_name=own.name, federation_uuid=own.federation,
            tls_files=tls_files, settings=settings, max_package_bytes=own.max_package_bytes,
            observer=metrics,
        )
        # Health reports NOT_SERVING while the director resumes its experiments, then SERVING.
        running = server.start(host=host or own.host, port=own.port if port is None else port,
                               ready=False)
    except BaseException:
        if ops is not None:
            ops.stop()
        director.registry.close()
        raise
    if metrics is not None:
        metrics.watch(lambda: director_snapshot(director))
        metrics.set_ready_check(server.health.is_serving)
    try:
        director.start()
    except BaseException:
        running.stop(None)
        if ops is not None:
            ops.stop()
        raise
    server.health.set_serving()
    log.info("director %s serving on %s (workspace %s)", own.name, running.address,
             own.workspace)
    return RunningDirector(director=director, server=running, config=config, metrics=metrics,
                           ops=ops)
