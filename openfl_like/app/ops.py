"""The operations side of the composition roots: metrics, the HTTP ops port, readiness.

``start_aggregator`` and ``run_collaborator`` call these so that their own modules stay about
the federation. The port comes from an explicit argument (``--metrics-port``; 0 picks a free
port) or else the plan's ``network.metrics_port``/``FX_METRICS_PORT`` (0 there means off).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from openfl_like.app.aggregator_io import EventSink
from openfl_like.runners.base import TaskOutcome, TaskRunner, Weights
from openfl_like.transport.http_ops import OpsServer, start_ops_server
from openfl_like.transport.metrics import AggregatorMetrics, CollaboratorMetrics
from openfl_like.transport.settings import TransportSettings


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
