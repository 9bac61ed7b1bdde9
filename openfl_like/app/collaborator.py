"""Composition root of a collaborator: its shard, its runner and the gRPC client, in one loop.

With ``handle_signals``, SIGTERM/SIGHUP/SIGINT stop it gracefully (``app.signals``): a long-poll or
a handshake is cut at once (nothing is lost: the aggregator hands the work out again); a task in
progress finishes and its result is sent, unless sending needs a retry (a stop ends the backoff);
no further task starts. ``run_collaborator`` then raises ``StoppedBySignal``. A second signal
exits at once: the collaborator persists nothing but its lock, which the kernel releases.

With a metrics port (``metrics_port=``, or the plan copy's ``network.metrics_port``) it serves
``/metrics`` (task durations, bytes, retries, reconnects), ``/healthz`` and ``/readyz`` (200 while
it works for the federation) over HTTP (``app.ops``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from openfl_like.app.common import Workspace, parse_address, runner_params
from openfl_like.app.locks import ProcessLock
from openfl_like.app.ops import TimedRunner, start_collaborator_ops
from openfl_like.app.reconnect import OutageLog, OutageLoggingRetry
from openfl_like.app.settings import transport_settings
from openfl_like.app.signals import TERMINATING_SIGNALS, SignalStop
from openfl_like.core.errors import ConfigError, PermissionDeniedError, PlanError
from openfl_like.core.ids import check_name
from openfl_like.core.logging import get_logger, log_context
from openfl_like.core.messages import (
    HandshakeReply,
    HeartbeatReply,
    ResultAck,
    TaskResult,
    TasksReply,
)
from openfl_like.federation.collaborator import (
    AggregatorPort,
    Collaborator,
    CollaboratorSettings,
    CollaboratorSummary,
)
from openfl_like.pki import PkiStore
from openfl_like.plan.schema import Plan
from openfl_like.runners.base import TaskOutcome, TaskRunner, Weights
from openfl_like.runners.registry import create_runner
from openfl_like.transport.aggregator_client import AggregatorGRPCClient
from openfl_like.transport.credentials import TlsFiles

log = get_logger(__name__)


class GrpcAggregatorPort:
    """Adapts AggregatorGRPCClient to the federation's AggregatorPort."""

    def __init__(self, client: AggregatorGRPCClient) -> None:
        self.client = client

    def handshake(self, plan_digest: str, fingerprint: Mapping[str, str],
                  sample_counts: Mapping[str, int], contract_digest: str = "") -> HandshakeReply:
        return self.client.handshake(plan_digest, fingerprint, sample_counts,
                                     contract_digest=contract_digest)

    def get_tasks(self) -> TasksReply:
        return self.client.get_tasks()

    def get_aggregated_tensors(self, round_number: int, names: Sequence[str]
                               ) -> dict[str, np.ndarray]:
        tensors = self.client.get_aggregated_tensors(round_number, names)
        return {name: tensor.array for name, tensor in tensors.items()}

    def send_local_task_results(self, result: TaskResult, tensors: Mapping[str, np.ndarray]
                                ) -> ResultAck:
        return self.client.send_local_task_results(result, tensors)

    def heartbeat(self) -> HeartbeatReply:
        return self.client.heartbeat()


class StoppablePort:
    """An AggregatorPort whose waiting calls (handshake, long-poll) a stop request cuts short."""

    def __init__(self, inner: AggregatorPort, stop: SignalStop) -> None:
        self.inner = inner
        self.stop = stop

    def handshake(self, plan_digest: str, fingerprint: Mapping[str, str],
                  sample_counts: Mapping[str, int], contract_digest: str = "") -> HandshakeReply:
        with self.stop.interruptible():
            return self.inner.handshake(plan_digest, fingerprint, sample_counts, contract_digest)

    def get_tasks(self) -> TasksReply:
        with self.stop.interruptible():
            return self.inner.get_tasks()

    def get_aggregated_tensors(self, round_number: int, names: Sequence[str]
                               ) -> dict[str, np.ndarray]:
        return self.inner.get_aggregated_tensors(round_number, names)

    def send_local_task_results(self, result: TaskResult, tensors: Mapping[str, np.ndarray]
                                ) -> ResultAck:
        return self.inner.send_local_task_results(result, tensors)

    def heartbeat(self) -> HeartbeatReply:
        return self.inner.heartbeat()


class StoppableRunner:
    """A TaskRunner that starts no new task once a stop was requested (the current one ends)."""

    def __init__(self, inner: TaskRunner, stop: SignalStop) -> None:
        self.inner = inner
        self.stop = stop

    def get_weights(self) -> Weights:
        return self.inner.get_weights()

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        self.inner.set_weights(weights)

    def train(self, *, epochs: int, batch_size: int) -> TaskOutcome:
        self.stop.raise_if_stopped()
        return self.inner.train(epochs=epochs, batch_size=batch_size)

    def validate(self, *, batch_size: int) -> TaskOutcome:
        self.stop.raise_if_stopped()
        return self.inner.validate(batch_size=batch_size)

    def sample_counts(self) -> Mapping[str, int]:
        return self.inner.sample_counts()


def site_data_file(plan: Plan, name: str, data_file: str | Path | None = None) -> Path | None:
    """The site's data description: ``data_file`` (``--data``), else a data.yaml entry that is
    a path (relative to the plan folder); None when data.yaml gives a digits shard index."""
    if data_file is not None:
        return Path(data_file).expanduser()
    ref = plan.shard_for(name)
    if isinstance(ref, int):
        return None
    path = Path(ref).expanduser()
    return path if path.is_absolute() else plan.plan_dir / path


def build_runner(plan: Plan, name: str, *, allow_custom: bool = False,
                 data_file: str | Path | None = None) -> TaskRunner:
    """The collaborator's runner on its own data: the site's data description (``data_file``
    or a data.yaml path), checked against the plan's contract, or a digits shard index."""
    params = runner_params(plan, allow_custom=allow_custom)
    if plan.task_runner.name == "noop" and data_file is None:
        return create_runner("noop", None, seed=plan.data.seed, **params)
    described = site_data_file(plan, name, data_file)
    if described is not None:
        from openfl_like.app.data import load_site_data
        from openfl_like.plan.local_data import load_local_data_spec

        dataset = load_site_data(plan, load_local_data_spec(described),
                                 allow_custom=allow_custom)
        log.info("%s: %s (%d train, %d valid samples)", name, dataset.source,
                 dataset.num_train, dataset.num_valid)
        return create_runner(plan.task_runner.name, dataset, seed=plan.data.seed, **params)
    shard_ref = plan.shard_for(name)
    assert isinstance(shard_ref, int)
    if plan.data.loader != "digits":
        raise PlanError(f"data.yaml: {name}: a shard index needs the digits loader, not "
                        f"{plan.data.loader!r}; give a data description file")
    from openfl_like.data.digits import load_digits_shard

    num_shards = plan.data.num_shards or len(plan.collaborators)
    shard = load_digits_shard(
        shard_ref, num_shards, seed=plan.data.seed, test_fraction=plan.data.test_fraction,
        method=plan.data.split, alpha=plan.data.alpha, valid_fraction=plan.data.valid_fraction,
    )
    log.info("%s: shard %d of %d (%d train, %d valid samples)", name, shard_ref, num_shards,
             shard.num_train, shard.num_valid)
    return create_runner(plan.task_runner.name, shard, seed=plan.data.seed, **params)


TaskEvent = Mapping[str, Any]  # {"round": r, "task": t, "metrics": {...}, "samples": n}


class FdEventWriter:
    """Writes each task event as one JSON line to an inherited file descriptor (the envoy's
    pipe), flushed at once. A closed reader (the envoy is gone) disables it without failing
    the federation."""

    def __init__(self, fd: int) -> None:
        try:
            self._file = os.fdopen(fd, "w", encoding="utf-8", buffering=1, closefd=True)
        except OSError as exc:
            raise ConfigError(f"--events-fd {fd}: not an open file descriptor "
                            f"({exc.strerror})") from None
        self._lock = threading.Lock()
        self._broken = False

    def __call__(self, event: TaskEvent) -> None:
        line = json.dumps(event, separators=(",", ":"), allow_nan=False)
        with self._lock:
            if self._broken:
                return
            try:
                self._file.write(line + "\n")
                self._file.flush()
            except OSError as exc:
                self._broken = True
                log.warning("task events are no longer written (%s)", exc.strerror or exc)

    def close(self) -> None:
        with self._lock:
            self._broken = True
            with contextlib.suppress(OSError):
                self._file.close()


def task_event(round_number: int, task: str, metrics: Mapping[str, float],
               samples: int) -> dict[str, Any]:
    """The JSON-able event of one finished task (non-finite metrics are left out)."""
    scalars = {str(k): float(v) for k, v in metrics.items() if math.isfinite(float(v))}
    return {"round": int(round_number), "task": str(task), "metrics": scalars,
            "samples": int(samples)}


def run_collaborator(
    plan: Plan,
    name: str,
    *,
    pki: PkiStore,
    aggregator_address: str | None = None,
    tls_files: TlsFiles | None = None,
    workspace: str | Path | None = None,
    allow_custom: bool = False,
    handle_signals: bool = False,
    data_file: str | Path | None = None,
    events: Callable[[TaskEvent], None] | None = None,
    metrics_port: int | None = None,
    metrics_host: str | None = None,
) -> CollaboratorSummary:
    """Join the federation as ``name`` and work until it ends.

    ``handle_signals`` (main thread only): a terminating signal stops it gracefully (module
    docstring) and raises ``StoppedBySignal``. ``data_file``: this site's data description
    (default: the collaborator's data.yaml entry). ``events``: called with ``task_event(...)``
    after each finished task (e.g. ``FdEventWriter`` for an envoy). ``metrics_port`` (0: a free
    port) and ``metrics_host`` override the plan's ``network.metrics_port``/``metrics_host``.
    """
    check_name(name, "collaborator name")
    if name not in plan.collaborators:
        raise PermissionDeniedError(
            f"{name!r} is not a collaborator of this plan (cols.yaml lists: "
            f"{', '.join(plan.collaborators)})"
        )
    ws = Workspace.for_plan(plan, workspace)
    collaborator: Collaborator | None = None

    def on_stop(signum: signal.Signals) -> None:
        log.info("%s: %s received: stopping after the current task", name, signum.name)
        if collaborator is not None:
            collaborator.stop()

    signals = TERMINATING_SIGNALS if handle_signals else ()
    with (log_context(federation=plan.federation.name, collaborator=name),
          ProcessLock(ws.locks_dir / f"collaborator-{name}.lock", f"collaborator {name!r}"),
          SignalStop(signals, on_stop=on_stop) as stop):
        # The site's data first: a mismatch with the contract is refused before any network.
        runner = TimedRunner(build_runner(plan, name, allow_custom=allow_custom,
                                          data_file=data_file))
        settings = transport_settings(plan)
        metrics, ops = start_collaborator_ops(
            settings, metrics_port, metrics_host,
            ready=lambda: collaborator is not None and not stop.stopped)
        if aggregator_address:
            host, port = parse_address(aggregator_address)
        else:
            host, port = plan.aggregator.host, plan.aggregator.port
        files = None
        if settings.tls:
            files = tls_files or TlsFiles.for_participant(pki, name)
            files.read()  # fail early, naming the missing file
        client = AggregatorGRPCClient(
            host=host, port=port, collaborator_name=name,
            aggregator_name=plan.aggregator.name, federation_uuid=plan.federation_uuid,
            tls_files=files, settings=settings,
            # a stop request ends a retry's backoff at once: no point in reconnecting then
            retry=OutageLoggingRetry.from_settings(settings.retry, sleep=stop.sleep_or_raise,
                                                   outage=OutageLog(name)),
            observer=metrics,
        )
        with client, contextlib.ExitStack() as cleanup:
            if ops is not None:
                cleanup.callback(ops.stop)
            on_task = _task_listener(events)
            if metrics is not None:
                on_task = _timed_listener(on_task, runner, metrics.task_done)
            collaborator = Collaborator(
                name, StoppablePort(GrpcAggregatorPort(client), stop),
                StoppableRunner(runner, stop), CollaboratorSettings.from_plan(plan),
                on_task=on_task,
            )
            try:
                summary = collaborator.run()
            finally:
                # An orderly exit frees the name, so a restart is not refused as a second
                # process for the aggregator's takeover time.
                client.leave(timeout=1.0)
        stop.raise_if_stopped()
        return summary


def _task_listener(events: Callable[[TaskEvent], None] | None
                   ) -> Callable[[int, str, Mapping[str, float], int], None] | None:
    if events is None:
        return None

    def listener(round_number: int, task: str, metrics: Mapping[str, float],
                 samples: int) -> None:
        events(task_event(round_number, task, metrics, samples))

    return listener


TaskListener = Callable[[int, str, Mapping[str, float], int], None]


def _timed_listener(inner: TaskListener | None, runner: TimedRunner,
                    task_done: Callable[[int, str, float], None]) -> TaskListener:
    """Tells ``task_done`` each task's round, name and duration, then ``inner`` (if any)."""
    def listener(round_number: int, task: str, metrics: Mapping[str, float],
                 samples: int) -> None:
        task_done(round_number, task, runner.last_seconds)
        if inner is not None:
            inner(round_number, task, metrics, samples)

    return listener
