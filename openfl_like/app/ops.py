"""The operations side of the composition roots: metrics, the HTTP ops port, readiness.

``start_aggregator``, ``run_collaborator``, ``start_director`` and the envoy's ``_serve`` call
these so that their own modules stay about the federation. The port comes from an explicit
argument (``--metrics-port``; 0 picks a free port) or else the plan's (director.yaml's,
envoy.yaml's) ``network.metrics_port``/``FX_METRICS_PORT`` (0 there means off).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from openfl_like.app.aggregator_io import EventSink
from openfl_like.core.errors import ConnectionFailedError
from openfl_like.core.experiments import (
    EnvoyAssignment,
    FailureCode,
    FeedbackItem,
    ShardInfo,
)
from openfl_like.director.ports import EnvoyDirectorPort
from openfl_like.runners.base import TaskOutcome, TaskRunner, Weights
from openfl_like.transport.director_metrics import (
    DirectorMetrics,
    DirectorSnapshot,
    EnvoyMetrics,
)
from openfl_like.transport.http_ops import OpsServer, start_ops_server
from openfl_like.transport.metrics import AggregatorMetrics, CollaboratorMetrics
from openfl_like.transport.settings import TransportSettings

if TYPE_CHECKING:
    from openfl_like.director.director import Director

T = TypeVar("T")


def metrics_port_of(settings: TransportSettings, port: int | None) -> int | None:
    """The port to serve on (None: off): ``port`` when given, else the settings' (0: off)."""
    if port is not None:
        return port
    return settings.metrics_port or None


def start_aggregator_ops(settings: TransportSettings, port: int | None, host: str | None
               ) -> tuple[AggregatorMetrics | None, OpsServer | None,
                          Callable[[Callable[[], bool]], None]]:
    """Metrics and the HTTP ops port when configured: (metrics, server, set the ready check).

    Until the check is set (the state is still loading), /readyz answers 503.
    """
    port = metrics_port_of(settings, port)
    if port is None:
        return None, None, lambda _check: None
    metrics = AggregatorMetrics()
    ops = start_ops_server(metrics.registry, ready=metrics.is_ready, port=port,
                           host=host or settings.metrics_host, what="aggregator")
    return metrics, ops, metrics.set_ready_check


def round_listener(events: EventSink | None, metrics: AggregatorMetrics | None
                    ) -> Callable[[Mapping[str, Any]], None] | None:
    """Each closed round's record, to the events sink and the metrics (either may be off)."""
    if events is None and metrics is None:
        return None

    def closed(record: Mapping[str, Any]) -> None:
        if metrics is not None:
            metrics.round_closed(record)
        if events is not None:
            events({"type": "round", **record})

    return closed


def start_collaborator_ops(settings: TransportSettings, port: int | None, host: str | None,
                           *, ready: Callable[[], bool]
                           ) -> tuple[CollaboratorMetrics | None, OpsServer | None]:
    """A collaborator's metrics and HTTP ops port when configured, else (None, None)."""
    port = metrics_port_of(settings, port)
    if port is None:
        return None, None
    metrics = CollaboratorMetrics()
    ops = start_ops_server(metrics.registry, ready=ready, port=port,
                           host=host or settings.metrics_host, what="collaborator")
    return metrics, ops


class TimedRunner:
    """A TaskRunner that notes how long its last task took (``last_seconds``), so the task
    listener can put it in ``openfl_collaborator_task_duration_seconds`` by task name."""

    def __init__(self, inner: TaskRunner, clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self.clock = clock
        self.last_seconds = 0.0

    def get_weights(self) -> Weights:
        return self.inner.get_weights()

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        self.inner.set_weights(weights)

    def train(self, *, epochs: int, batch_size: int) -> TaskOutcome:
        started = self.clock()
        try:
            return self.inner.train(epochs=epochs, batch_size=batch_size)
        finally:
            self.last_seconds = self.clock() - started

    def validate(self, *, batch_size: int) -> TaskOutcome:
        started = self.clock()
        try:
            return self.inner.validate(batch_size=batch_size)
        finally:
            self.last_seconds = self.clock() - started

    def sample_counts(self) -> Mapping[str, int]:
        return self.inner.sample_counts()


# -- the director and the envoys -----------------------------------------------------------------

METRICS_ENV = ("FX_METRICS_PORT", "FX_METRICS_HOST")


def children_env(environ: Mapping[str, str]) -> dict[str, str] | None:
    """The environment for a director's aggregators or an envoy's collaborators: without
    FX_METRICS_PORT/HOST, meant for this process (its children would all try the same port);
    None (inherit as is) when they are not set."""
    if not any(key in environ for key in METRICS_ENV):
        return None
    return {k: v for k, v in environ.items() if k not in METRICS_ENV}


def director_snapshot(director: Director) -> DirectorSnapshot:
    """The director's gauges (``DirectorSnapshot``): two aggregate queries, one envoy read."""
    from openfl_like.director.views import is_online

    by_state, events = director.registry.counts()
    now = director.clock()
    hb = director.settings.heartbeat_seconds
    envoys = director.registry.envoys()
    return DirectorSnapshot(
        experiments=by_state, envoys_registered=len(envoys),
        envoys_online=sum(1 for e in envoys if is_online(e, now, hb)),
        stream_followers=director.events.follower_count(), events_stored=events,
        broadcasts_pending=director.broadcasts.live())


def start_director_ops(settings: TransportSettings, port: int | None, host: str | None
                       ) -> tuple[DirectorMetrics | None, OpsServer | None]:
    """The director's metrics (the server's observer) and HTTP ops port when configured;
    /readyz answers 503 until ``metrics.set_ready_check`` is called."""
    port = metrics_port_of(settings, port)
    if port is None:
        return None, None
    metrics = DirectorMetrics()
    ops = start_ops_server(metrics.registry, ready=metrics.is_ready, port=port,
                           host=host or settings.metrics_host, what="director")
    return metrics, ops


def start_envoy_ops(settings: TransportSettings, port: int | None, host: str | None
                    ) -> tuple[EnvoyMetrics | None, OpsServer | None]:
    """An envoy's metrics and HTTP ops port when configured, else (None, None)."""
    port = metrics_port_of(settings, port)
    if port is None:
        return None, None
    metrics = EnvoyMetrics()
    ops = start_ops_server(metrics.registry, ready=metrics.is_ready, port=port,
                           host=host or settings.metrics_host, what="envoy")
    return metrics, ops


_UNREACHED = (ConnectionFailedError,)  # UnavailableError, DeadlineExceededError included


class ObservedEnvoyPort:
    """An ``EnvoyDirectorPort`` that tells ``EnvoyMetrics`` whether the director answered,
    which experiments were reported failed or rejected, and how many feedback items the
    director acknowledged (the rise of the seq it holds, per experiment)."""

    def __init__(self, inner: EnvoyDirectorPort, metrics: EnvoyMetrics) -> None:
        self.inner = inner
        self.metrics = metrics
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def _call(self, call: Callable[[], T]) -> T:
        try:
            result = call()
        except _UNREACHED:
            self.metrics.director_call(False)
            raise
        except Exception:
            self.metrics.director_call(True)  # a refusal: the director answered
            raise
        self.metrics.director_call(True)
        return result

    def update_shard_info(self, shard: ShardInfo) -> str:
        return self._call(lambda: self.inner.update_shard_info(shard))

    def update_envoy_status(self, running: Sequence[str], awaiting_approval: Sequence[str]
                            ) -> float:
        return self._call(lambda: self.inner.update_envoy_status(running, awaiting_approval))

    def wait_experiment(self, wait_seconds: float) -> EnvoyAssignment:
        return self._call(lambda: self.inner.wait_experiment(wait_seconds))

    def get_experiment_data(self, experiment: str, dest: Path, *, max_bytes: int) -> list[Path]:
        return self._call(lambda: self.inner.get_experiment_data(experiment, dest,
                                                                 max_bytes=max_bytes))

    def set_experiment_failed(self, experiment: str, code: int, description: str,
                              last_log_lines: Sequence[str]) -> None:
        self.metrics.experiment_failed(rejected=code == FailureCode.REJECTED)
        self._call(lambda: self.inner.set_experiment_failed(experiment, code, description,
                                                            last_log_lines))

    def send_feedback(self, experiment: str, items: Sequence[FeedbackItem]) -> int:
        held = self._call(lambda: self.inner.send_feedback(experiment, items))
        with self._lock:
            before = self._held.get(experiment)
            self._held[experiment] = max(held, before or 0)
        if items and before is not None:
            self.metrics.feedback_sent(held - before)
        return held

    def __getattr__(self, name: str) -> Any:  # anything else the client has (close, ...)
        return getattr(self.inner, name)
