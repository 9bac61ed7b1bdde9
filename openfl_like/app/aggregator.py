"""Composition root of the aggregator: plan + PKI -> federation logic behind a gRPC server.

``start_aggregator`` returns a ``RunningAggregator``; ``run()`` blocks until the federation ends,
keeping ``status.json`` in the workspace fresh (what `fx aggregator status` and `fx plan run`
read), then writes the final evaluation and shuts the server down once every live collaborator
has been told that the federation is over.

With a metrics port (``network.metrics_port`` or ``metrics_port=``) it also serves ``/metrics``,
``/healthz`` and ``/readyz`` over HTTP (``transport.http_ops``, ``transport.metrics``); that
port opens before saved state is loaded, so ``/readyz`` answers 503 while the aggregator resumes.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openfl_like.app.aggregator_io import (  # re-exported: the aggregator's public helpers
    EventSink,
    events_to_fd,
    final_metric_line,
    final_test_set,
    final_validation_metrics,
    uses_digits,
    weights_from_file,
)
from openfl_like.app.archive import ARCHIVE_DIR, archive_previous_run, finished_run
from openfl_like.app.common import Workspace, runner_params
from openfl_like.app.exports import fault_hook_from_env, write_checksums
from openfl_like.app.locks import ProcessLock, aggregator_lock
from openfl_like.app.ops import round_listener, start_aggregator_ops
from openfl_like.app.settings import transport_settings
from openfl_like.core.errors import ConfigError, FederationError
from openfl_like.core.fsutil import atomic_write, replace_derived
from openfl_like.core.logging import get_logger, set_log_fields
from openfl_like.core.messages import (
    HandshakeReply,
    HeartbeatReply,
    NamedTensor,
    PollStatus,
    ResultAck,
    TaskResult,
    TasksReply,
    TensorStream,
)
from openfl_like.core.waiting import Wakeup
from openfl_like.federation.aggregator import Aggregator
from openfl_like.federation.outputs import write_final_test
from openfl_like.federation.state import StateStore
from openfl_like.federation.uploads import clear_staging
from openfl_like.pki import PkiStore
from openfl_like.plan.schema import Plan
from openfl_like.runners.registry import evaluate_weights, initial_weights, save_native_model
from openfl_like.transport.aggregator_server import AggregatorGRPCServer
from openfl_like.transport.credentials import TlsFiles
from openfl_like.transport.health import HealthState
from openfl_like.transport.http_ops import OpsServer
from openfl_like.transport.memory import limit_malloc_arenas, release_free_heap_after
from openfl_like.transport.metrics import AggregatorMetrics
from openfl_like.transport.server import RunningServer

log = get_logger(__name__)

__all__ = ["EventSink", "RunningAggregator", "events_to_fd", "final_metric_line",
           "final_test_set", "final_validation_metrics", "start_aggregator", "uses_digits",
           "weights_from_file"]

STATUS_INTERVAL_SECONDS = 0.5
# After the last round: how long to keep answering, beyond the liveness timeout, so that every
# collaborator (also one that reconnects to a restarted aggregator) learns it is over.
FAREWELL_SECONDS = 10.0
FAREWELL_RECORD = "farewell.json"  # in the state folder: who has heard that it is over
# SIGTERM: how long in-flight uploads and a running round close get before the process exits.
SHUTDOWN_GRACE_SECONDS = 5.0

class _FarewellTracker:
    """Wraps the aggregator handler to note who has been told the federation is done.

    The names are also kept in ``record`` (derived, not fsynced), so an aggregator restarted
    after a crash at the very end does not wait for collaborators that had heard and left.
    """

    def __init__(self, inner: Aggregator, record: Path) -> None:
        self.inner = inner
        self.record = record
        self.told_done: set[str] = set()
        self._lock = threading.Lock()
        if inner.done:
            with contextlib.suppress(OSError, ValueError, TypeError):
                saved = json.loads(record.read_text())
                if saved.get("federation_uuid") == inner.plan.federation_uuid:
                    self.told_done = {str(n) for n in saved["told"]}

    def is_authorized(self, collaborator: str) -> bool:
        return self.inner.is_authorized(collaborator)

    def handshake(self, collaborator: str, plan_digest: str,
                  plan_fingerprint: Mapping[str, str],
                  sample_counts: Mapping[str, int] | None = None,
                  contract_digest: str | None = None) -> HandshakeReply:
        reply = self.inner.handshake(collaborator, plan_digest, plan_fingerprint, sample_counts,
                                     contract_digest)
        if reply.done:
            self._told(collaborator)
        return reply

    def heartbeat(self, collaborator: str) -> HeartbeatReply:
        reply = self.inner.heartbeat(collaborator)
        if reply.done:
            self._told(collaborator)
        return reply

    def get_tasks(self, collaborator: str, wait_seconds: float, *,
                  wakeup: Wakeup | None = None) -> TasksReply:
        reply = self.inner.get_tasks(collaborator, wait_seconds, wakeup=wakeup)
        if reply.status in (PollStatus.DONE, PollStatus.FAILED):
            self._told(collaborator)
        return reply

    def get_aggregated_tensors(self, collaborator: str, round_number: int,
                               names: Sequence[str], tags: Sequence[str]
                               ) -> Iterable[NamedTensor]:
        return self.inner.get_aggregated_tensors(collaborator, round_number, names, tags)

    def send_local_task_results(self, result: TaskResult,
                                tensors: Iterator[NamedTensor]) -> ResultAck:
        return self.inner.send_local_task_results(result, tensors)

    def send_local_task_result_streams(self, result: TaskResult,
                                       tensors: Iterator[TensorStream]) -> ResultAck:
        # Passed through so the servicer sees the StreamingUploads capability (uploads staged
        # chunk by chunk, not joined per tensor in memory).
        return self.inner.send_local_task_result_streams(result, tensors)

    def status(self) -> Mapping[str, object]:
        return self.inner.status()

    def _told(self, collaborator: str) -> None:
        with self._lock:
            if collaborator in self.told_done:
                return
            self.told_done.add(collaborator)
            text = json.dumps({"federation_uuid": self.inner.plan.federation_uuid,
                               "told": sorted(self.told_done)})
        with contextlib.suppress(OSError):
            replace_derived(self.record, text)

    def not_yet_told(self, *, dropped_too: bool = False) -> list[str]:
        """Collaborators of the plan not told that the federation ended (and not dropped,
        unless ``dropped_too``)."""
        with self._lock:
            told = set(self.told_done)
        return self.inner.awaiting_farewell(told, dropped_too=dropped_too)


@dataclass
class RunningAggregator:
    plan: Plan
    workspace: Workspace
    aggregator: Aggregator
    server: RunningServer
    allow_custom: bool = False
    _tracker: _FarewellTracker | None = None
    _lock: ProcessLock | None = None
    _grpc: AggregatorGRPCServer | None = None
    final_metrics: dict[str, Any] = field(default_factory=dict)
    stop_requested: threading.Event = field(default_factory=threading.Event)
    _revoked_seen: frozenset[str] = frozenset()
    events: EventSink | None = None
    _status_extra: dict[str, Any] = field(default_factory=lambda: {"running": True})
    metrics: AggregatorMetrics | None = None
    _ops: OpsServer | None = None
    _stopped: bool = False

    def ready(self) -> bool:
        """Ready to serve collaborators (``/readyz``): gRPC health SERVING when known, else
        serving rounds, not stopping, not ended."""
        health = self.server.health
        if health is not None and not health.is_serving():
            return False
        agg = self.aggregator
        return not (self._stopped or self.stop_requested.is_set() or agg.done or agg.failed)

    @property
    def metrics_port(self) -> int | None:
        """The HTTP port of /metrics, /healthz and /readyz (None: off)."""
        return None if self._ops is None else self._ops.port

    def emit(self, event: Mapping[str, Any]) -> None:
        """Tell the supervisor (if any); never raises."""
        if self.events is None:
            return
        try:
            self.events(event)
        except Exception:
            log.exception("the events sink failed")

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def health(self) -> HealthState | None:
        """grpc.health.v1 of the aggregator's port; ``health.is_serving()`` for plain probes."""
        return self.server.health

    def _not_serving(self) -> None:
        if self.server.health is not None:
            self.server.health.shut_down()  # pushed to Watch callers at once

    def write_status(self, **extra: Any) -> dict[str, Any]:
        status = dict(self.aggregator.status())
        status["address"] = f"{self.server.host}:{self.server.port}"
        status["updated_unix"] = time.time()
        if self._grpc is not None:
            status["uploads_in_flight"] = self._grpc.uploads.snapshot()
        if self.final_metrics:
            status["final_test"] = self.final_metrics
        status.update(self._status_extra)
        status.update(extra)
        replace_derived(self.workspace.status_path, json.dumps(status, indent=1, default=str))
        return status

    def _poll_revocations(self) -> None:
        """Tell the rounds about newly revoked participants, so they stop waiting at once."""
        revoked = getattr(self._grpc, "revoked_participants", None)
        if revoked is None:
            return
        names = frozenset(revoked())
        new = names - self._revoked_seen
        self._revoked_seen = names
        if new:
            self.aggregator.mark_revoked(sorted(new))

    def request_stop(self) -> None:
        """Ask ``run()`` to stop gracefully (what SIGTERM does). Health turns NOT_SERVING at
        once, from a short thread (this may run inside a signal handler, which must not wait
        on the health servicer's lock); ``run()`` sees the request within half a second."""
        self.stop_requested.set()
        threading.Thread(target=self._not_serving, name="not-serving", daemon=True).start()

    def run(self, *, timeout: float | None = None) -> dict[str, Any]:
        """Serve until the federation ends; return the final test metrics (or raise).

        ``stop_requested`` (set by a SIGTERM/SIGINT handler) ends it early and gracefully:
        returns ``{"stopped": True}`` with the state saved, to be resumed by a restart.
        """
        end = None if timeout is None else time.monotonic() + timeout
        try:
            while not self.aggregator.wait_until_done(STATUS_INTERVAL_SECONDS):
                self._poll_revocations()
                self.write_status()
                if self.stop_requested.is_set():
                    return self._stop_gracefully()
                if end is not None and time.monotonic() > end:
                    raise FederationError(f"federation not finished after {timeout} s")
            if self.aggregator.failed:
                if self.metrics is not None:
                    self.metrics.federation_failed()
                self.write_status()
                self.emit({"type": "failed", "reason": self.aggregator.failed})
                self._say_farewell()
                raise FederationError(f"federation failed: {self.aggregator.failed}")
            if not self.aggregator.exported:  # the closer's attempt failed: once more, loudly
                self.aggregator.export_final()
            self.final_metrics = self.finish()
            write_checksums(self.workspace.output_dir)
            self.write_status()
            self.emit({"type": "final", "metrics": self.final_metrics})
            self._say_farewell()
            return self.final_metrics
        finally:
            self.stop()
            self._after_run()

    def _after_run(self) -> None:
        """The process is about to exit: status.json keeps how it ended (what `fx aggregator
        status` shows once nobody refreshes it) and an ended federation's staging is removed."""
        try:
            agg = self.aggregator
            if agg.failed:
                phase, extra = "failed", {}
            elif agg.done and self.final_metrics:
                phase, extra = "done", {}  # (write_status adds them as "final_test")
            elif agg.done:
                phase, extra = "failed", {"failed": "the final evaluation or export did not "
                                          "complete (see the log); a restart redoes it"}
            else:
                phase, extra = "stopped", {}
            self.write_status(phase=phase, running=False, ended_unix=time.time(), **extra)
            if agg.failed or (agg.done and self.final_metrics):
                clear_staging(StateStore(self.workspace.state_dir))
        except Exception:  # the run's own outcome (returned or raised) matters more
            log.exception("could not record how the run ended in %s", self.workspace.root)

    def _stop_gracefully(self) -> dict[str, Any]:
        log.info("stopping on request: no new work; in-flight uploads get %.0f s; the state is "
                 "saved and a restart resumes it", SHUTDOWN_GRACE_SECONDS)
        self._not_serving()
        self.aggregator.begin_shutdown()
        self.server.stop(SHUTDOWN_GRACE_SECONDS)
        self.aggregator.stop(SHUTDOWN_GRACE_SECONDS)
        self._status_extra["phase"] = "stopped"
        self.write_status()
        self.emit({"type": "stopped"})
        return {"stopped": True}

    def finish(self) -> dict[str, Any]:
        """Evaluate the final model and export the models.

        On ``aggregator.test_data`` when the plan names it (``test_*`` metrics); on the digits
        test set for a digits plan; otherwise the final metrics are the sites' validation of the
        final model, sample-weighted (``valid_*``, from the history).
        """
        plan = self.plan
        params = runner_params(plan, allow_custom=self.allow_custom)
        final = self.aggregator.weights()
        metrics: dict[str, Any] = {"rounds": plan.aggregator.rounds_to_train}
        tested = False
        if plan.task_runner.name == "noop":
            tested = True
        elif plan.aggregator.test_data or uses_digits(plan):
            x_test, y_test, where = final_test_set(plan)
            try:
                scores = evaluate_weights(plan.task_runner.name, final, x_test, y_test, **params)
            except ConfigError as exc:
                if plan.aggregator.test_data:
                    raise
                # sites that brought their own data (--data) to a plan without a contract
                log.warning("the digits test set does not fit the final model (%s); reporting "
                            "the sites' validation instead", exc.message)
            else:
                tested = True
                metrics.update({f"test_{k}": v for k, v in scores.items()})
                metrics["test_samples"] = len(y_test)
                log.info("final model on %s: %s", where,
                         ", ".join(f"{k}={v:.4f}" for k, v in scores.items()))
        if not tested:
            valid = final_validation_metrics(self.aggregator.history)
            metrics.update({f"valid_{k}": v for k, v in valid.items()})
            log.info("no test data: final model on the sites' validation data (sample-weighted "
                     "mean): %s", ", ".join(f"{k}={v:.4f}" for k, v in valid.items()))
        out = self.workspace.output_dir
        name = plan.task_runner.name
        if save_native_model(name, final, out / "final_model.keras", **params) is not None:
            save_native_model(name, self.aggregator.best_weights(), out / "best_model.keras",
                              **params)
        atomic_write(self.workspace.final_metrics_path, json.dumps(metrics, indent=1))
        write_final_test(out, self.aggregator.history, metrics,  # metrics, TensorBoard, plot
                         step=plan.aggregator.rounds_to_train,
                         tensorboard=plan.aggregator.write_tensorboard,
                         plot=plan.aggregator.write_plot)
        return metrics

    def _say_farewell(self) -> None:
        """Keep answering until every collaborator of the plan has heard that it is over, so
        none waits in vain. One that was dropped (revoked, or silent for the liveness timeout)
        is not waited for beyond a grace that outlasts a client's reconnect backoff: after a
        restart, a collaborator still backing off from the outage must get through."""
        tracker = self._tracker
        if tracker is None:
            return
        started = time.monotonic()
        liveness = self.plan.stragglers.liveness_timeout_seconds
        backoff = transport_settings(self.plan).retry.max_backoff_seconds
        grace_end = started + max(FAREWELL_SECONDS, 2 * backoff + 2)
        end = max(grace_end, started + liveness + FAREWELL_SECONDS)
        untold = tracker.not_yet_told(dropped_too=True)
        if untold:
            log.info("waiting for %s to hear that the federation ended", ", ".join(untold))
        while untold and not self.stop_requested.is_set():
            now = time.monotonic()
            if now >= end or (now >= grace_end and not tracker.not_yet_told()):
                break
            time.sleep(0.05)  # shutdown only; never on a round's path
            self._poll_revocations()
            untold = tracker.not_yet_told(dropped_too=True)
        if untold:
            log.warning("exiting without telling %s that the federation ended",
                        ", ".join(untold))

    def stop(self, grace: float | None = 1.0) -> None:
        self._stopped = True
        self._not_serving()
        self.aggregator.begin_shutdown()
        self.server.stop(grace)
        self.aggregator.stop()
        if self._status_extra.get("running"):  # status.json says the process is gone
            self._status_extra["running"] = False
            try:
                self.write_status()
            except Exception:
                log.exception("could not write the final status")
        if self._ops is not None:
            self._ops.stop()
            self._ops = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def _previous_run(plan: Plan, ws: Workspace, *, fresh: bool) -> None:
    """Archive the previous run (``fresh``), or refuse to serve a finished one."""
    if fresh:
        archived = archive_previous_run(ws)
        if archived is not None:
            log.info("--fresh: the previous run of %s is archived in %s", ws.root, archived)
        return
    finished = finished_run(ws)
    if finished is not None:
        raise FederationError(f"{finished.describe(plan.federation.name)}; use --fresh to start "
                              f"a new run, the old one is archived in {ws.root / ARCHIVE_DIR}/")


def start_aggregator(
    plan: Plan,
    *,
    pki: PkiStore,
    workspace: str | Path | None = None,
    host: str | None = None,
    port: int | None = None,
    allow_custom: bool = False,
    events: EventSink | None = None,
    metrics_port: int | None = None,
    metrics_host: str | None = None,
    fresh: bool = False,
) -> RunningAggregator:
    """Load or create the federation state and start serving it over gRPC.

    ``events`` is told when it listens, each closed round (its record), and how it ended.
    ``metrics_port`` (0: a free port) and ``metrics_host`` override the plan's
    ``network.metrics_port``/``metrics_host`` (module docstring); without either, no HTTP port.
    A finished federation in the workspace is refused, unless ``fresh``: the previous run is
    then archived (``app.archive``) and a new one starts.
    """
    limit_malloc_arenas()  # before TensorFlow or gRPC start threads (see transport.memory)
    set_log_fields(federation=plan.federation.name)  # on every log record (core.logging)
    if plan.aggregator.test_data:
        final_test_set(plan)  # read and check it now: a bad file fails the start, not the end
    ws = Workspace.for_plan(plan, workspace)
    lock = aggregator_lock(ws).acquire()
    ops: OpsServer | None = None
    try:
        _previous_run(plan, ws, fresh=fresh)
        settings = transport_settings(plan)
        metrics, ops, set_ready = start_aggregator_ops(settings, metrics_port, metrics_host)
        tls_files = TlsFiles.for_participant(pki, plan.aggregator.name) if settings.tls else None
        if tls_files is not None:
            tls_files.read()  # fail early, naming the missing file
        initial = None
        if not StateStore(ws.state_dir).exists():
            params = runner_params(plan, allow_custom=allow_custom)
            initial = initial_weights(plan.task_runner.name, seed=plan.data.seed, **params)
            if plan.aggregator.initial_weights:
                initial = weights_from_file(plan, initial)
        # release_free_heap: without it the heap keeps the freed chunks of every upload
        # resident, through aggregation and on into later rounds (see transport.memory).
        aggregator = Aggregator(plan, initial_weights=initial, state_dir=ws.state_dir,
                                output_dir=ws.output_dir, after_upload=release_free_heap_after,
                                fault_hook=fault_hook_from_env(),
                                on_round_closed=round_listener(events, metrics))
        if metrics is not None:
            deadline = plan.stragglers.round_deadline_seconds if plan.stragglers.enabled else 0
            metrics.watch_status(aggregator.status, staging_dir=StateStore(ws.state_dir).staging,
                                 round_deadline_seconds=deadline)
        tracker = _FarewellTracker(aggregator, ws.state_dir / FAREWELL_RECORD)
        grpc_server = AggregatorGRPCServer(
            tracker, aggregator_name=plan.aggregator.name,
            federation_uuid=plan.federation_uuid, tls_files=tls_files, settings=settings,
            observer=metrics,
        )
        try:
            running = grpc_server.start(  # health: NOT_SERVING until the end of the start
                host=host or plan.aggregator.host,
                port=plan.aggregator.port if port is None else port, ready=False,
            )
        except BaseException:
            aggregator.stop()
            raise
    except BaseException:
        if ops is not None:
            ops.stop()
        lock.release()
        raise
    handle = RunningAggregator(plan=plan, workspace=ws, aggregator=aggregator, server=running,
                               allow_custom=allow_custom, _tracker=tracker, _lock=lock,
                               _grpc=grpc_server, events=events, metrics=metrics, _ops=ops)
    set_ready(handle.ready)
    handle.write_status()
    grpc_server.health.set_serving()
    handle.emit({"type": "listening", "port": running.port,
                 "federation_uuid": plan.federation_uuid})
    return handle
