"""Prometheus metrics of a director and of an envoy (prometheus-client), as ``transport.metrics``.

Each process gets its own ``CollectorRegistry`` (``metrics.new_registry``: process RSS, CPU, fds,
threads); ``transport.http_ops`` serves it on ``/metrics``. Two kinds of figures again:

- counters fed as things happen: the director's gRPC server tells ``DirectorMetrics`` (a
  ``transport.observers.ServerObserver``) about bytes, refused calls, accepted and refused
  submissions and parked WaitExperiment long-polls; an envoy's director port (wrapped in
  ``app.ops``) and its retry policy (``ObservedRetryPolicy``) tell ``EnvoyMetrics``;
- gauges read at scrape time through plain callables the application wires: a
  ``DirectorSnapshot`` (two aggregate registry queries and one read of the envoy table), the
  envoy's ``status()`` and ``tally()``. Neither ``director/`` nor ``federation/`` imports this.

Names: ``openfl_director_`` / ``openfl_envoy_`` prefixes, base units as suffixes, ``_total`` on
counters (prometheus-client adds it), labels from fixed sets only: experiment states
(``core.experiments.ExperimentState``), RPC names, grpc status code names, check names and
error classes' ``code``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from openfl_like.core.experiments import ExperimentState
from openfl_like.core.logging import get_logger
from openfl_like.transport.metrics import new_registry
from openfl_like.transport.observers import ACCEPTED
from openfl_like.transport.retry import RetryPolicy, T

log = get_logger(__name__)

EXPERIMENT_STATES: tuple[str, ...] = tuple(s.value for s in ExperimentState)


@dataclass(frozen=True)
class DirectorSnapshot:
    """What the director's gauges show, read at scrape time (``app.ops.director_snapshot``)."""

    experiments: Mapping[str, int]  # by ExperimentState value
    envoys_registered: int
    envoys_online: int
    stream_followers: int
    events_stored: int
    broadcasts_pending: int


def _check_of(ready: Callable[[], bool] | None) -> float:
    try:
        return 1.0 if ready is not None and ready() else 0.0
    except Exception:
        return 0.0


class _DirectorCollector(Collector):
    def __init__(self, snapshot: Callable[[], DirectorSnapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        try:
            snap = self._snapshot()
        except Exception:  # e.g. the registry is closed after stop: the rest still tells
            log.debug("director snapshot for /metrics failed", exc_info=True)
            return
        p = "openfl_director_"
        states = GaugeMetricFamily(p + "experiments", "Experiments by state.", labels=["state"])
        for state in EXPERIMENT_STATES:  # every state, 0 included: a bounded, stable series set
            states.add_metric([state], float(snap.experiments.get(state, 0)))
        yield states
        for name, doc, value in (
            ("envoys_registered", "Envoys that registered their dataset.",
             snap.envoys_registered),
            ("envoys_online", "Registered envoys heard from within two heartbeat periods.",
             snap.envoys_online),
            ("metric_stream_followers", "GetMetricStream calls following an experiment now.",
             snap.stream_followers),
            ("events_stored", "Experiment events in the registry (all experiments).",
             snap.events_stored),
            ("broadcasts_pending", "Broadcasts (cancel, shutdown, notices) within their TTL.",
             snap.broadcasts_pending),
        ):
            yield GaugeMetricFamily(p + name, doc, value=float(value))


class DirectorMetrics:
    """The director's metrics; satisfies ``transport.observers.ServerObserver``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else new_registry()
        r, p = self.registry, "openfl_director_"
        self._received = Counter(p + "received_bytes", "Bytes of request messages received.",
                                 registry=r)
        self._sent = Counter(p + "sent_bytes", "Bytes of response messages sent.", registry=r)
        self._refused = Counter(
            p + "calls_refused", "Calls that ended with an error status, by RPC, status code "
            "and the check that refused them.", ["method", "code", "check"], registry=r)
        self._submitted = Counter(p + "experiments_submitted",
                                  "Experiment submissions accepted into the queue.", registry=r)
        self._sub_refused = Counter(
            p + "experiments_refused", "Experiment submissions refused, by the error's code "
            "(refused, limit_exceeded, resource_exhausted, unauthenticated, ...).", ["reason"],
            registry=r)
        self._parked = Gauge(p + "parked_polls", "Envoys' WaitExperiment long-polls parked now.",
                             registry=r)
        self._ready = Gauge(p + "ready", "1 while the director's gRPC health is SERVING "
                            "(/readyz).", registry=r)
        self._ready_check: Callable[[], bool] | None = None
        self._ready.set_function(self._ready_value)
        self._watching = False

    # -- ServerObserver ---------------------------------------------------------------------
    def received(self, nbytes: int) -> None:
        self._received.inc(nbytes)

    def sent(self, nbytes: int) -> None:
        self._sent.inc(nbytes)

    def refused(self, method: str, code: str, check: str) -> None:
        self._refused.labels(method, code, check).inc()

    def result(self, outcome: str, reason: str = "") -> None:
        """A SetNewExperiment submission was ``ACCEPTED`` or refused (``reason``: error code)."""
        if outcome == ACCEPTED:
            self._submitted.inc()
        else:
            self._sub_refused.labels(reason or "other").inc()

    def transfer(self, direction: str, nbytes: int, seconds: float) -> None:
        """Not reported by the director's server (its byte counters cover packages)."""

    def polls_parked(self, delta: int) -> None:
        self._parked.inc(delta)

    # -- application hooks -----------------------------------------------------------------
    def watch(self, snapshot: Callable[[], DirectorSnapshot]) -> None:
        """Read the gauges of ``DirectorSnapshot`` from ``snapshot()`` at each scrape (once)."""
        if not self._watching:
            self._watching = True
            self.registry.register(_DirectorCollector(snapshot))

    def set_ready_check(self, ready: Callable[[], bool]) -> None:
        self._ready_check = ready

    def _ready_value(self) -> float:
        return _check_of(self._ready_check)

    def is_ready(self) -> bool:
        return self._ready_value() == 1.0


class _EnvoyCollector(Collector):
    def __init__(self, status: Callable[[], Mapping[str, Any]],
                 tally: Callable[[], Mapping[str, int]]) -> None:
        self._status = status
        self._tally = tally

    def collect(self) -> Iterator[Metric]:
        p = "openfl_envoy_"
        try:
            status, tally = self._status(), self._tally()
        except Exception:
            log.debug("envoy status for /metrics failed", exc_info=True)
            return
        yield GaugeMetricFamily(p + "registered", "1 once the envoy registered its dataset.",
                                value=1.0 if status.get("registered") else 0.0)
        yield GaugeMetricFamily(p + "experiments_running", "Experiments whose collaborator runs.",
                                value=float(len(status.get("running") or ())))
        yield GaugeMetricFamily(p + "experiments_awaiting_approval",
                                "Experiments waiting for the operator's approve/reject.",
                                value=float(len(status.get("awaiting_approval") or ())))
        yield CounterMetricFamily(p + "experiments_finished",
                                  "Experiments whose collaborator exited 0.",
                                  value=float(tally.get("finished", 0)))
        yield CounterMetricFamily(p + "feedback_items_dropped",
                                  "Feedback items (log lines, metrics) given up unsent.",
                                  value=float(tally.get("feedback_dropped", 0)))


class EnvoyMetrics:
    """An envoy's metrics. ``director_call`` and ``retry`` are fed by ``app.ops``' port
    wrapper and ``ObservedRetryPolicy``; the rest is read at scrape time (``watch``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else new_registry()
        r, p = self.registry, "openfl_envoy_"
        self._reachable = Gauge(p + "director_reachable", "1 when the last call to the "
                                "director got an answer (even a refusal), 0 when it could not "
                                "reach it.", registry=r)
        self._failed = Counter(p + "experiments_failed",
                               "Experiments this envoy reported failed to the director.",
                               registry=r)
        self._rejected = Counter(p + "experiments_rejected",
                                 "Experiments this envoy's operator rejected.", registry=r)
        self._feedback_sent = Counter(p + "feedback_items_sent", "Feedback items the director "
                                      "acknowledged.", registry=r)
        self._retries = Counter(p + "retries", "Calls to the director retried, by the status "
                                "code that failed them.", ["code"], registry=r)
        self._ready = Gauge(p + "ready", "1 while registered with the director and not "
                            "stopping (/readyz).", registry=r)
        self._ready_check: Callable[[], bool] | None = None
        self._ready.set_function(self._ready_value)
        self._watching = False

    def director_call(self, reached: bool) -> None:
        self._reachable.set(1.0 if reached else 0.0)

    def experiment_failed(self, rejected: bool) -> None:
        (self._rejected if rejected else self._failed).inc()

    def feedback_sent(self, items: int) -> None:
        if items > 0:
            self._feedback_sent.inc(items)

    def retry(self, code: str) -> None:
        self._retries.labels(code).inc()

    def watch(self, status: Callable[[], Mapping[str, Any]],
              tally: Callable[[], Mapping[str, int]]) -> None:
        """Gauges from the envoy's ``status()`` and counters from its ``tally()`` (once)."""
        if not self._watching:
            self._watching = True
            self.registry.register(_EnvoyCollector(status, tally))

    def set_ready_check(self, ready: Callable[[], bool]) -> None:
        self._ready_check = ready

    def _ready_value(self) -> float:
        return _check_of(self._ready_check)

    def is_ready(self) -> bool:
        return self._ready_value() == 1.0


def status_code_name(error: BaseException) -> str:
    """A grpc error's status code name (UNAVAILABLE, ...); else the error class's ``code``."""
    code = getattr(error, "code", None)
    if callable(code):
        try:
            return str(getattr(code(), "name", "UNKNOWN"))
        except Exception:
            return "UNKNOWN"
    return str(code or "other")


@dataclass
class ObservedRetryPolicy(RetryPolicy):
    """A ``RetryPolicy`` that tells ``observe`` each retried call's status code name."""

    observe: Callable[[str], object] | None = None

    def call(self, operation: Callable[[], T], *,
             is_retryable: Callable[[BaseException], bool], describe: str = "call",
             on_retry: Callable[[BaseException, float], None] | None = None) -> T:
        def noted(error: BaseException, wait: float) -> None:
            if self.observe is not None:
                self.observe(status_code_name(error))
            if on_retry is not None:
                on_retry(error, wait)

        return super().call(operation, is_retryable=is_retryable, describe=describe,
                            on_retry=noted)
