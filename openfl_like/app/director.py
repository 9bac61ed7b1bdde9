"""Composition root of the director: its config + PKI -> director logic behind a gRPC server.

``start_director`` returns a ``RunningDirector`` serving `DirectorGRPCServer` over mutual TLS with
the director's certificate (CN = ``director.name``); ``run()`` blocks until ``stop_requested`` is
set (SIGTERM/SIGINT in `fx director start`), then stops gracefully: envoys are told by a
broadcast, experiments' aggregators save their state (a restart resumes them), the registry is
closed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from openfl_like.app.settings import transport_mapping
from openfl_like.core.experiments import BroadcastKind
from openfl_like.core.logging import get_logger
from openfl_like.director.director import Director
from openfl_like.pki import PkiStore
from openfl_like.plan.director_config import DirectorConfig
from openfl_like.transport.credentials import TlsFiles
from openfl_like.transport.director_server import DirectorGRPCServer
from openfl_like.transport.health import HealthState
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

    def stop(self) -> None:
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
                   port: int | None = None) -> RunningDirector:
    """Open the registry, resume the experiments that were running, and start serving."""
    own = config.director
    settings = TransportSettings.from_mapping(transport_mapping(config.network))
    tls_files = None
    if settings.tls:
        tls_files = TlsFiles.for_participant(pki, own.name)
        tls_files.read()  # fail early, naming the missing file
    director = Director(config, pki_dir=Path(pki.root).resolve())
    server = DirectorGRPCServer(
        director, director_name=own.name, federation_uuid=own.federation,
        tls_files=tls_files, settings=settings, max_package_bytes=own.max_package_bytes,
    )
    # Health reports NOT_SERVING while the director resumes its experiments, then SERVING.
    running = server.start(host=host or own.host, port=own.port if port is None else port,
                           ready=False)
    try:
        director.start()
    except BaseException:
        running.stop(None)
        raise
    server.health.set_serving()
    log.info("director %s serving on %s (workspace %s)", own.name, running.address,
             own.workspace)
    return RunningDirector(director=director, server=running, config=config)
