"""The collaborator loop: long-poll for tasks, fetch the global model, run the tasks, send results.

It talks to the aggregator through ``AggregatorPort`` (the app adapts the gRPC client to it; tests
use an in-memory port), and never sleeps: waiting is the aggregator's long-poll. Reconnection and
retries are the port's job; this loop only reacts to what the aggregator answers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from openfl_like.core.errors import FederationError, NotFoundError, OpenflLikeError
from openfl_like.core.logging import get_logger, log_context
from openfl_like.core.messages import (
    HandshakeReply,
    HeartbeatReply,
    NamedTensor,
    PollStatus,
    ResultAck,
    ResultKey,
    TaskKind,
    TaskResult,
    TaskSpec,
    TasksReply,
)
from openfl_like.plan.contract import contract_digest
from openfl_like.plan.digest import plan_digest, plan_fingerprint
from openfl_like.plan.schema import Plan
from openfl_like.runners.base import TaskOutcome, TaskRunner

log = get_logger(__name__)


# Called after each task of a round finished: (round, task name, metrics, samples used).
# The envoy turns these into its experiment's metric stream; a failing listener is logged and
# never stops the federation.
TaskListener = Callable[[int, str, Mapping[str, float], int], None]


class AggregatorPort(Protocol):
    """What a collaborator needs from its connection to the aggregator."""

    def handshake(self, plan_digest: str, fingerprint: Mapping[str, str],
                  sample_counts: Mapping[str, int], contract_digest: str = "") -> HandshakeReply:
        ...

    def get_tasks(self) -> TasksReply: ...

    def get_aggregated_tensors(self, round_number: int, names: Sequence[str]
                               ) -> dict[str, np.ndarray]: ...

    def send_local_task_results(self, result: TaskResult, tensors: Mapping[str, np.ndarray]
                                ) -> ResultAck: ...

    def heartbeat(self) -> HeartbeatReply: ...


@dataclass(frozen=True)
class CollaboratorSettings:
    """What the loop needs from the plan (build it with ``from_plan``)."""

    plan_digest: str
    fingerprint: Mapping[str, str]
    epochs: int = 1
    batch_size: int = 32
    heartbeat_seconds: float = 0.0
    contract_digest: str = ""  # of the plan's data_contract; '' without one

    @classmethod
    def from_plan(cls, plan: Plan) -> CollaboratorSettings:
        contract = contract_digest(plan.data_contract) if plan.data_contract else ""
        return cls(plan_digest=plan_digest(plan), fingerprint=plan_fingerprint(plan),
                   contract_digest=contract,
                   epochs=plan.collaborator.epochs, batch_size=plan.collaborator.batch_size,
                   heartbeat_seconds=plan.collaborator.heartbeat_seconds)


@dataclass
class CollaboratorSummary:
    name: str
    rounds_trained: int = 0
    last_round: int | None = None
    last_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    results_sent: int = 0
    results_refused: int = 0
    reason: str = ""

    def describe(self) -> str:
        parts = [f"{self.name}: {self.rounds_trained} round(s) trained"]
        for task, metrics in sorted(self.last_metrics.items()):
            shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()))
            parts.append(f"{task}: {shown}")
        if self.reason:
            parts.append(self.reason)
        return "; ".join(parts)


class Collaborator:
    def __init__(self, name: str, port: AggregatorPort, runner: TaskRunner,
                 settings: CollaboratorSettings, *, on_task: TaskListener | None = None) -> None:
        self.name = name
        self.port = port
        self.runner = runner
        self.settings = settings
        self.on_task = on_task
        self.summary = CollaboratorSummary(name)
        self._model_round: int | None = None
        self._stop = threading.Event()
        self._working = threading.Event()  # set while a round is worked on (heartbeats needed)

    def stop(self) -> None:
        """Ask the loop to end after the current call (used on shutdown and in tests)."""
        self._stop.set()

    def run(self) -> CollaboratorSummary:
        """Work until the federation ends; raises OpenflLikeError when refused or mismatched."""
        hello = self.port.handshake(self.settings.plan_digest, self.settings.fingerprint,
                                    dict(self.runner.sample_counts()),
                                    self.settings.contract_digest)
        log.info("%s joined at round %d of %d", self.name, hello.round_number, hello.rounds_total)
        if hello.failed:
            raise FederationError(f"the federation failed: {hello.failed}")
        if hello.done:
            self.summary.reason = "federation already finished"
            return self.summary
        heartbeat = self._start_heartbeat()
        try:
            while not self._stop.is_set():
                reply = self.port.get_tasks()
                if reply.status is PollStatus.FAILED:
                    self.summary.reason = reply.reason
                    raise FederationError(reply.reason or "the federation failed")
                if reply.status is PollStatus.DONE:
                    self.summary.reason = reply.reason or "federation finished"
                    break
                if reply.status is PollStatus.WORK:
                    self._run_round(reply.round_number, reply.tasks, reply.model)
        finally:
            self._stop.set()
            if heartbeat is not None:
                heartbeat.join(timeout=5)
        log.info("%s done: %s", self.name, self.summary.describe())
        return self.summary

    def _start_heartbeat(self) -> threading.Thread | None:
        """Beats only while a round's work runs (download, tasks, upload): a parked long-poll
        already tells the aggregator that this collaborator is alive, so beats then would be
        pure cost."""
        interval = self.settings.heartbeat_seconds
        if interval <= 0:
            return None

        def beat() -> None:
            while not self._stop.wait(interval):
                if not self._working.is_set():
                    continue
                try:
                    if self.port.heartbeat().done:
                        return
                except OpenflLikeError as exc:
                    log.warning("%s: heartbeat failed: %s", self.name, exc)

        thread = threading.Thread(target=beat, name=f"{self.name}-heartbeat", daemon=True)
        thread.start()
        return thread

    def _run_round(self, round_number: int, tasks: Sequence[TaskSpec],
                   model: Sequence[NamedTensor] = ()) -> None:
        # From the model's download to the upload's end this collaborator is not parked in a
        # long-poll: the heartbeat tells the aggregator it is alive (a big model on a slow link
        # can take longer than the liveness timeout).
        self._working.set()
        try:
            with log_context(round=round_number):
                self._work_round(round_number, tasks, model)
        finally:
            self._working.clear()

    def _work_round(self, round_number: int, tasks: Sequence[TaskSpec],
                    model: Sequence[NamedTensor]) -> None:
        if self._model_round != round_number:
            if model:  # a small model came with the work: no download call
                weights = {t.name: t.array for t in model}
            else:
                try:
                    weights = self.port.get_aggregated_tensors(round_number, [])
                except NotFoundError as exc:
                    log.info("%s: round %d moved on (%s)", self.name, round_number, exc)
                    return
            self.runner.set_weights(weights)
            self._model_round = round_number
        # Every task of the round runs first; then one upload carries the train update with
        # the metrics of the others (one call per round instead of one per task).
        results: list[TaskResult] = []
        tensors: Mapping[str, np.ndarray] = {}
        try:
            for task in tasks:
                outcome = self._execute(task)
                result = TaskResult(ResultKey(self.name, round_number, task.name),
                                    data_size=outcome.data_size, metrics=dict(outcome.metrics))
                self._notify(round_number, task.name, result)
                if task.kind is TaskKind.TRAIN:
                    tensors = self.runner.get_weights()
                    results.insert(0, result)
                    # The runner now holds the local model; the next round must fetch it.
                    self._model_round = None
                else:
                    results.append(result)
        except BaseException:
            # A task failed or the collaborator is being stopped: what is done still counts.
            if results:
                self._send(round_number, results, tensors)
            raise
        if results:
            self._send(round_number, results, tensors)

    def _notify(self, round_number: int, task: str, result: TaskResult) -> None:
        if self.on_task is None:
            return
        try:
            self.on_task(round_number, task, dict(result.metrics), int(result.data_size))
        except Exception as exc:  # a listener's failure is not the federation's
            log.warning("%s: task listener failed: %s", self.name, exc)

    def _send(self, round_number: int, results: Sequence[TaskResult],
              tensors: Mapping[str, np.ndarray]) -> None:
        main = replace(results[0], also=tuple(results[1:]))
        ack = self.port.send_local_task_results(main, tensors)
        self.summary.last_round = round_number
        if not ack.accepted:
            self.summary.results_refused += 1
            log.warning("%s: %s refused: %s", self.name, main.key, ack.message)
            return
        if not ack.duplicate:
            self.summary.results_sent += len(results)
        for result in results:
            self.summary.last_metrics[result.key.task_name] = dict(result.metrics)
            if result.key.task_name == TaskKind.TRAIN.value:
                self.summary.rounds_trained += 1

    def _execute(self, task: TaskSpec) -> TaskOutcome:
        batch = int(task.params.get("batch_size", self.settings.batch_size))
        if task.kind is TaskKind.TRAIN:
            epochs = int(task.params.get("epochs", self.settings.epochs))
            return self.runner.train(epochs=epochs, batch_size=batch)
        return self.runner.validate(batch_size=batch)
