"""Composition root of an envoy: the Envoy agent wired to the director's gRPC client.

``run_envoy`` is what ``fx envoy start`` calls: one envoy per workspace (a process lock), the
envoy's own certificate as its identity (and, through ``--pki-dir``, its collaborators'),
SIGTERM/SIGHUP/SIGINT stop it gracefully (its collaborators get SIGTERM and finish their task; a
second signal exits at once). ``approve_experiment`` / ``reject_experiment`` / ``envoy_status``
talk to a running envoy over its Unix socket; with no envoy running, a decision is recorded in
the experiment's decision.json and applied at the envoy's next start.

With a metrics port (``network.metrics_port`` of envoy.yaml, ``FX_METRICS_PORT`` or
``metrics_port=``) it also serves ``/metrics``, ``/healthz`` and ``/readyz`` over HTTP
(``app.ops``, ``transport.director_metrics``); /readyz: registered and not stopping.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from openfl_like.app.locks import ProcessLock
from openfl_like.app.ops import ObservedEnvoyPort, children_env, start_envoy_ops
from openfl_like.app.settings import transport_mapping
from openfl_like.app.signals import TERMINATING_SIGNALS, SignalStop
from openfl_like.core.errors import ConfigError, NotFoundError, UnavailableError
from openfl_like.core.logging import get_logger
from openfl_like.director.envoy import Envoy, check_envoy_data
from openfl_like.director.envoy_approvals import (
    Decision,
    EnvoyNotRunningError,
    read_decision,
    send_operator_command,
    write_decision,
)
from openfl_like.director.ports import EnvoyDirectorPort
from openfl_like.pki import PkiStore
from openfl_like.plan.envoy_config import EnvoyConfig
from openfl_like.transport.credentials import TlsFiles
from openfl_like.transport.director_metrics import EnvoyMetrics, ObservedRetryPolicy
from openfl_like.transport.http_ops import OpsServer
from openfl_like.transport.retry import RetryPolicy
from openfl_like.transport.settings import TransportSettings

log = get_logger(__name__)


def envoy_transport_settings(config: EnvoyConfig) -> TransportSettings:
    """The config's ``network`` keys with FX_* environment overrides applied."""
    return TransportSettings.from_mapping(transport_mapping(config.network), env=os.environ)


@contextmanager
def director_port(config: EnvoyConfig, name: str, *, pki_dir: Path,
                  stop: threading.Event | None = None, metrics: EnvoyMetrics | None = None
                  ) -> Iterator[EnvoyDirectorPort]:
    """A connected ``DirectorClient`` as the envoy's port (closed on exit, which also ends a
    long-poll in flight). A set ``stop`` ends the client's retry backoff; ``metrics`` are told
    about retries and answers (``app.ops.ObservedEnvoyPort``)."""
    try:
        from openfl_like.transport.director_client import DirectorClient
    except ModuleNotFoundError as exc:
        if exc.name != "openfl_like.transport.director_client":
            raise
        raise ConfigError("this build has no director client "
                          "(openfl_like.transport.director_client)") from None

    settings = envoy_transport_settings(config)
    files = None
    if settings.tls:
        files = TlsFiles.for_participant(PkiStore(pki_dir), name)
        files.read()  # fail early, naming the missing file
    else:
        log.warning("envoy %s: TLS is off (network.tls: false): the director connection is "
                    "neither encrypted nor authenticated", name)
    overrides: dict[str, Any] = {}
    if stop is not None:
        overrides["sleep"] = _stop_aware_sleep(stop)
    if metrics is not None:
        overrides["observe"] = metrics.retry
    policy = ObservedRetryPolicy if metrics is not None else RetryPolicy
    client = DirectorClient(
        host=config.director.host, port=config.director.port, name=name,
        director_name=config.director.name, federation_uuid=config.director.federation,
        tls_files=files, settings=settings,
        retry=policy.from_settings(settings.retry, **overrides),
    )
    with client:
        yield client if metrics is None else ObservedEnvoyPort(client, metrics)


def _stop_aware_sleep(stop: threading.Event) -> Callable[[float], None]:
    """A retry backoff that ends at once, with an error, when the envoy stops (no retry storm
    against a director that is gone while the envoy shuts down)."""

    def sleep(seconds: float) -> None:
        if stop.wait(seconds):
            raise UnavailableError("the envoy is stopping")

    return sleep


@dataclass
class RunningEnvoy:
    """An envoy running in a thread of this process (``start_envoy``)."""

    envoy: Envoy
    thread: threading.Thread
    stop_event: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    ops: OpsServer | None = None  # /metrics, /healthz, /readyz (closed when the envoy ends)

    def stop(self, timeout: float | None = None) -> None:
        """Stop gracefully (children get SIGTERM) and wait; re-raises the envoy's error."""
        self.stop_event.set()
        self.wait(timeout)

    def wait(self, timeout: float | None = None) -> None:
        self.thread.join(timeout)
        if self.error is not None:
            raise self.error


def _check(config: EnvoyConfig, name: str) -> None:
    if config.name != name:
        raise ConfigError(f"the configuration was loaded for envoy {config.name!r}, not {name!r}")


def _serve(config: EnvoyConfig, name: str, pki_dir: Path, stop: threading.Event,
           started: threading.Event | None = None,
           holder: list[tuple[Envoy, OpsServer | None]] | None = None, *,
           metrics_port: int | None = None, metrics_host: str | None = None) -> None:
    with ProcessLock(config.workspace / "locks" / "envoy.lock", f"envoy {name!r}"):
        # The data first: a site whose data does not fit is refused before any network.
        counts = check_envoy_data(config)
        metrics, ops = start_envoy_ops(envoy_transport_settings(config), metrics_port,
                                       metrics_host)
        try:
            with director_port(config, name, pki_dir=pki_dir, stop=stop,
                               metrics=metrics) as port:
                # FX_METRICS_PORT is this process's: its collaborators must not take it.
                envoy = Envoy(name, config, port, pki_dir=Path(pki_dir).resolve(),
                              sample_counts=counts, env=children_env(os.environ))
                if metrics is not None:
                    metrics.watch(envoy.status, envoy.tally)
                    metrics.set_ready_check(lambda: envoy.registered and not stop.is_set())
                if holder is not None:
                    holder.append((envoy, ops))
                if started is not None:
                    started.set()
                envoy.run(stop)
        finally:
            if ops is not None:
                ops.stop()


def start_envoy(config: EnvoyConfig, name: str, *, pki_dir: Path,
                metrics_port: int | None = None, metrics_host: str | None = None
                ) -> RunningEnvoy:
    """Run the envoy in a background thread (no signal handling: call ``stop``)."""
    _check(config, name)
    stop = threading.Event()
    started = threading.Event()
    holder: list[tuple[Envoy, OpsServer | None]] = []
    running: RunningEnvoy

    def target() -> None:
        try:
            _serve(config, name, pki_dir, stop, started, holder, metrics_port=metrics_port,
                   metrics_host=metrics_host)
        except BaseException as exc:
            running.error = exc
            started.set()

    thread = threading.Thread(target=target, daemon=True, name=f"envoy-{name}")
    running = RunningEnvoy(envoy=None, thread=thread, stop_event=stop)  # type: ignore[arg-type]
    thread.start()
    started.wait()
    if running.error is not None:
        thread.join()
        raise running.error
    running.envoy, running.ops = holder[0]
    return running


def run_envoy(config: EnvoyConfig, name: str, *, pki_dir: Path, handle_signals: bool = True,
              metrics_port: int | None = None, metrics_host: str | None = None) -> None:
    """Run the envoy in this thread until a terminating signal (``handle_signals``, main
    thread only) or a fatal refusal by the director (raised)."""
    _check(config, name)
    stop = threading.Event()
    signals = TERMINATING_SIGNALS if handle_signals else ()

    def on_stop(signum: Any) -> None:
        log.info("envoy %s: %s received: stopping its collaborators", name, signum.name)
        stop.set()

    with SignalStop(signals, on_stop=on_stop):
        _serve(config, name, pki_dir, stop, metrics_port=metrics_port,
               metrics_host=metrics_host)


# -- the operator's commands ---------------------------------------------------------------------

def envoy_status(config: EnvoyConfig, name: str) -> dict[str, Any]:
    """What a running envoy reports: director, registration, running and awaiting experiments."""
    _check(config, name)
    try:
        return send_operator_command(config.socket_path, {"status": True})
    except EnvoyNotRunningError:
        raise EnvoyNotRunningError(f"envoy {name} is not running (no socket at "
                                   f"{config.socket_path})") from None


def approve_experiment(config: EnvoyConfig, name: str, experiment: str) -> dict[str, Any]:
    """Approve an experiment awaiting review; recorded for the next start if the envoy is down."""
    return _decide(config, name, experiment, Decision.APPROVED, "")


def reject_experiment(config: EnvoyConfig, name: str, experiment: str, reason: str
                      ) -> dict[str, Any]:
    """Reject an experiment awaiting review (the director is told, with ``reason``)."""
    return _decide(config, name, experiment, Decision.REJECTED, reason)


def _decide(config: EnvoyConfig, name: str, experiment: str, decision: Decision,
            reason: str) -> dict[str, Any]:
    _check(config, name)
    folder = config.experiment_dir(experiment)
    request: dict[str, Any] = (
        {"approve": experiment} if decision is Decision.APPROVED
        else {"reject": experiment, "reason": reason}
    )
    try:
        reply = send_operator_command(config.socket_path, request)
        return {**reply, "recorded": False}
    except EnvoyNotRunningError:
        pass
    record = read_decision(folder)
    if record is None:
        raise NotFoundError(f"unknown experiment {experiment!r}: envoy {name} has not received "
                            f"it (no {folder / 'decision.json'})")
    if record.applied and record.decision is not Decision.PENDING:
        raise ConfigError(f"experiment {experiment!r} was already {record.decision.value}")
    write_decision(folder, replace(record, decision=decision, reason=reason, applied=False,
                                   time=0.0))
    log.info("envoy %s is not running: %s %s recorded for its next start", name, experiment,
             decision.value)
    return {"ok": True, "experiment": experiment, "decision": decision.value, "recorded": True}
