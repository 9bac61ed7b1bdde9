"""Prometheus metrics of an aggregator and of a collaborator (prometheus-client).

Each process gets its own ``CollectorRegistry`` (never the library's global one), so tests can
run several in one interpreter; ``transport.http_ops`` serves it on ``/metrics``.

Two kinds of figures:

- counters and histograms fed as things happen, through the transport's observer Protocols
  (``transport.observers``) and a few calls from the application (a round closed, a task done);
- gauges read at scrape time from the aggregator's own status snapshot (``watch_status``): the
  round, who is active and awaited, the last aggregated metrics. A scrape costs one status
  snapshot (O(collaborators)), the same as one status-file write.

Names follow Prometheus' conventions: an ``openfl_`` prefix, base units as suffixes
(``_seconds``, ``_bytes``), ``_total`` on counters, and label values from small fixed sets (RPC
names, status code names, check names, task and metric names of the plan, collaborator names of
cols.yaml). Throughput is a histogram of bytes per second per model transfer (tensor bytes over
the transfer's time on the server); the byte counters count serialized messages, as on the wire.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from openfl_like.core.logging import get_logger

log = get_logger(__name__)

# Round durations: from sub-second (numpy, small models) to hours (large models, slow sites).
ROUND_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
TASK_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
# Bytes per second of one transfer: 100 kB/s (a poor link) to 10 GB/s (loopback, memory).
THROUGHPUT_BUCKETS = (1e5, 1e6, 1e7, 3e7, 1e8, 3e8, 1e9, 3e9, 1e10)


def os_threads() -> int:
    """Threads of this process as the kernel counts them (grpc's C threads too)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return threading.active_count()


class _ThreadsCollector(Collector):
    """``process_threads``: prometheus-client's ProcessCollector has RSS but not threads."""

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily("process_threads", "Threads of this process (OS threads).",
                                value=os_threads())


def new_registry() -> CollectorRegistry:
    """A registry of its own, with the process metrics (RSS, CPU, open fds, threads)."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    registry.register(_ThreadsCollector())
    return registry


def directory_bytes(path: Path) -> int:
    """Total size of the regular files directly in ``path`` (0 when it does not exist)."""
    total = 0
    try:
        with os.scandir(path) as entries:
            for entry in entries:
                try:
                    if entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                except OSError:
                    continue  # removed meanwhile
    except OSError:
        return 0
    return total


class _StatusCollector(Collector):
    """Gauges read from the aggregator's status snapshot at scrape time."""

    def __init__(self, status: Callable[[], Mapping[str, Any]], staging_dir: Path | None,
                 round_deadline_seconds: float) -> None:
        self._status = status
        self._staging = staging_dir
        self._deadline = round_deadline_seconds

    def collect(self) -> Iterator[Metric]:
        try:
            status = self._status()
        except Exception:  # a scrape must not fail: the other metrics still tell something
            log.exception("status snapshot for /metrics failed")
            return
        p = "openfl_aggregator_"

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(p + name, doc, value=value)

        collaborators = status.get("collaborators") or {}
        yield gauge("round", "Current round (0-based; the number of rounds closed).",
                    float(status.get("round") or 0))
        yield gauge("rounds_to_train", "Training rounds of the plan.",
                    float(status.get("rounds_to_train") or 0))
        yield gauge("round_age_seconds", "Age of the open round.",
                    float(status.get("round_age_seconds") or 0.0))
        yield gauge("round_deadline_seconds",
                    "The plan's round deadline (0: none); a round older than this is stalled.",
                    self._deadline)
        yield gauge("results_in_round", "Results recorded in the open round.",
                    float(status.get("results_in") or 0))
        yield gauge("collaborators", "Collaborators of the plan (cols.yaml).",
                    float(len(collaborators)))
        yield gauge("collaborators_active",
                    "Collaborators seen recently or parked in a long-poll.",
                    float(sum(1 for c in collaborators.values() if c.get("active"))))
        yield gauge("collaborators_awaited", "Collaborators the open round still waits for.",
                    float(len(status.get("waiting_for") or ())))
        yield gauge("collaborators_dropped",
                    "Collaborators dropped from the open round (silent or revoked).",
                    float(len(status.get("dropped") or {})))
        phase = str(status.get("phase") or "")
        yield gauge("done", "1 once the federation has finished its last round.",
                    1.0 if phase == "done" else 0.0)
        yield gauge("failed", "1 once the federation has failed.",
                    1.0 if status.get("failed") else 0.0)
        yield gauge("disk_problem", "1 while uploads are refused for lack of disk space.",
                    1.0 if status.get("disk_problem") else 0.0)
        if self._staging is not None:
            yield gauge("staging_bytes", "Bytes of staged updates waiting for the round close.",
                        float(directory_bytes(self._staging)))
        last = status.get("last_round") or None
        values = GaugeMetricFamily(
            p + "aggregated_metric",
            "Last aggregated value of each task's metric (round in ..._aggregated_metric_round).",
            labels=["task", "metric"])
        if last:
            for task, metrics in sorted((last.get("metrics") or {}).items()):
                for metric, value in sorted((metrics or {}).items()):
                    if isinstance(value, (int, float)):
                        values.add_metric([str(task), str(metric)], float(value))
        yield values
        yield gauge("aggregated_metric_round", "Round of the last aggregated metrics (-1: none).",
                    float(last["round"]) if last else -1.0)


class AggregatorMetrics:
    """The aggregator's metrics; satisfies ``transport.observers.ServerObserver``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else new_registry()
        r, p = self.registry, "openfl_aggregator_"
        self._received = Counter(p + "received_bytes", "Bytes of request messages received.",
                                 registry=r)
        self._sent = Counter(p + "sent_bytes", "Bytes of response messages sent.", registry=r)
        self._refused = Counter(
            p + "calls_refused", "Calls that ended with an error status, by RPC, status code "
            "and the check that refused them.", ["method", "code", "check"], registry=r)
        self._accepted = Counter(p + "results_accepted", "Results accepted (counted).",
                                 registry=r)
        self._duplicate = Counter(p + "results_duplicate",
                                  "Results already applied (a retry), answered without effect.",
                                  registry=r)
        self._results_refused = Counter(p + "results_refused", "Results refused, by reason.",
                                        ["reason"], registry=r)
        self._throughput = Histogram(
            p + "transfer_throughput_bytes_per_second",
            "Tensor bytes per second of each model transfer (upload: collaborator to "
            "aggregator).", ["direction"], buckets=THROUGHPUT_BUCKETS, registry=r)
        self._transfer_bytes = Counter(p + "transfer_tensor_bytes",
                                       "Tensor bytes of model transfers.", ["direction"],
                                       registry=r)
        self._parked = Gauge(p + "parked_polls", "GetTasks long-polls parked now.", registry=r)
        self._round_duration = Histogram(p + "round_duration_seconds",
                                         "Duration of each closed round.",
                                         buckets=ROUND_BUCKETS, registry=r)
        self._rounds_closed = Counter(
            p + "rounds_closed", "Rounds closed, by what closed them (complete, all_live, "
            "buffer_full, deadline; failed when the federation fails).", ["reason"], registry=r)
        for reason in ("complete", "all_live", "buffer_full", "deadline", "failed"):
            self._rounds_closed.labels(reason)  # present at 0: rate() works from the start
        self._ready = Gauge(p + "ready", "1 while ready to serve collaborators (/readyz).",
                            registry=r)
        self._ready_check: Callable[[], bool] | None = None
        self._ready.set_function(self._is_ready)
        self._status: _StatusCollector | None = None

    # -- ServerObserver ---------------------------------------------------------------------
    def received(self, nbytes: int) -> None:
        self._received.inc(nbytes)

    def sent(self, nbytes: int) -> None:
        self._sent.inc(nbytes)

    def refused(self, method: str, code: str, check: str) -> None:
        self._refused.labels(method, code, check).inc()

    def result(self, outcome: str, reason: str = "") -> None:
        if outcome == "accepted":
            self._accepted.inc()
        elif outcome == "duplicate":
            self._duplicate.inc()
        else:
            self._results_refused.labels(reason or "other").inc()

    def transfer(self, direction: str, nbytes: int, seconds: float) -> None:
        self._transfer_bytes.labels(direction).inc(nbytes)
        if nbytes > 0 and seconds > 0:
            self._throughput.labels(direction).observe(nbytes / seconds)

    def polls_parked(self, delta: int) -> None:
        self._parked.inc(delta)

    # -- application hooks -----------------------------------------------------------------
    def round_closed(self, record: Mapping[str, Any]) -> None:
        """A round's record (``federation.round_close.round_record``) became durable."""
        self._rounds_closed.labels(str(record.get("closed_by") or "other")).inc()
        duration = record.get("duration_seconds")
        if isinstance(duration, (int, float)):
            self._round_duration.observe(float(duration))

    def federation_failed(self) -> None:
        self._rounds_closed.labels("failed").inc()

    def watch_status(self, status: Callable[[], Mapping[str, Any]], *,
                     staging_dir: Path | None = None,
                     round_deadline_seconds: float = 0.0) -> None:
        """Read the status-derived gauges from ``status()`` at each scrape (once)."""
        if self._status is not None:
            return
        self._status = _StatusCollector(status, staging_dir, round_deadline_seconds)
        self.registry.register(self._status)

    def set_ready_check(self, ready: Callable[[], bool]) -> None:
        self._ready_check = ready

    def _is_ready(self) -> float:
        check = self._ready_check
        try:
            return 1.0 if check is not None and check() else 0.0
        except Exception:
            return 0.0

    def is_ready(self) -> bool:
        return self._is_ready() == 1.0


class CollaboratorMetrics:
    """A collaborator's metrics; satisfies ``transport.observers.ClientObserver``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else new_registry()
        r, p = self.registry, "openfl_collaborator_"
        self._sent = Counter(p + "sent_bytes", "Bytes of request messages sent.", registry=r)
        self._received = Counter(p + "received_bytes", "Bytes of response messages received.",
                                 registry=r)
        self._retries = Counter(p + "retries", "Calls retried, by the status code that failed "
                                "them.", ["code"], registry=r)
        self._reconnects = Counter(p + "reconnects",
                                   "Times the channel to the aggregator became ready again "
                                   "after it was lost.", registry=r)
        self._tasks = Histogram(p + "task_duration_seconds", "Duration of each task, by task.",
                                ["task"], buckets=TASK_BUCKETS, registry=r)
        self._round = Gauge(p + "round", "Round of the last task run (-1: none yet).",
                            registry=r)
        self._round.set(-1)

    def sent(self, nbytes: int) -> None:
        self._sent.inc(nbytes)

    def received(self, nbytes: int) -> None:
        self._received.inc(nbytes)

    def retry(self, code: str) -> None:
        self._retries.labels(code).inc()

    def reconnect(self) -> None:
        self._reconnects.inc()

    def task_done(self, round_number: int, task: str, seconds: float) -> None:
        self._tasks.labels(task).observe(max(0.0, seconds))
        self._round.set(round_number)
