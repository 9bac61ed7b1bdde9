"""An in-memory AggregatorHandler for transport tests: enough behaviour to prove the wire layer."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from openfl_like.core.errors import NotFoundError, PermissionDeniedError, PlanMismatchError
from openfl_like.core.messages import (
    AGGREGATED_TAG,
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


@dataclass
class FakeHandler:
    collaborators: set[str]
    model: dict[str, np.ndarray] = field(default_factory=dict)
    round_number: int = 3
    plan_digest: str = "digest-1"
    fingerprint: dict[str, str] = field(default_factory=lambda: {"rounds": "10", "lr": "0.1"})
    keep_tensors: bool = True
    received: dict[ResultKey, dict[str, np.ndarray]] = field(default_factory=dict)
    # bytes and tensors seen per key, even when the upload is a duplicate
    deliveries: Counter[ResultKey] = field(default_factory=Counter)
    received_bytes: int = 0
    work: threading.Event = field(default_factory=threading.Event)
    parked: int = 0  # get_tasks calls waiting right now
    get_tasks_calls: int = 0
    wait_now: bool = False  # answer WAIT at once, as a stopping aggregator does
    # test hooks: called after a result is recorded (e.g. to drop the connection before the reply)
    after_record: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def is_authorized(self, collaborator: str) -> bool:
        return collaborator in self.collaborators

    def handshake(
        self, collaborator: str, plan_digest: str, plan_fingerprint: Mapping[str, str]
    ) -> HandshakeReply:
        if plan_digest != self.plan_digest:
            differ = sorted(
                k for k in set(self.fingerprint) | set(plan_fingerprint)
                if self.fingerprint.get(k) != plan_fingerprint.get(k)
            )
            raise PlanMismatchError(f"plan differs from the aggregator's in: {', '.join(differ)}")
        return HandshakeReply(round_number=self.round_number, rounds_total=10)

    def heartbeat(self, collaborator: str) -> HeartbeatReply:
        return HeartbeatReply(round_number=self.round_number)

    def get_tasks(self, collaborator: str, wait_seconds: float) -> TasksReply:
        with self._lock:
            self.get_tasks_calls += 1
            self.parked += 1
        try:
            has_work = not self.wait_now and self.work.wait(wait_seconds)
        finally:
            with self._lock:
                self.parked -= 1
        if not has_work:
            return TasksReply(PollStatus.WAIT, self.round_number, reason="no work yet")
        task = TaskSpec("train", TaskKind.TRAIN, self.round_number, {"epochs": 1, "lr": 0.1})
        return TasksReply(PollStatus.WORK, self.round_number, (task,))

    def get_aggregated_tensors(
        self, collaborator: str, round_number: int, names: Sequence[str], tags: Sequence[str]
    ) -> Iterable[NamedTensor]:
        if any(tag != AGGREGATED_TAG for tag in tags):
            raise PermissionDeniedError("only the aggregated model can be downloaded")
        missing = [n for n in names if n not in self.model]
        if missing:
            raise NotFoundError(f"unknown tensors: {', '.join(missing)}")
        return self._iter(names or list(self.model), round_number)

    def _iter(self, names: Sequence[str], round_number: int) -> Iterator[NamedTensor]:
        for name in names:
            yield NamedTensor(name, self.model[name], round_number, (AGGREGATED_TAG,))

    def send_local_task_results(
        self, result: TaskResult, tensors: Iterator[NamedTensor]
    ) -> ResultAck:
        arrays: dict[str, np.ndarray] = {}
        for tensor in tensors:
            self.received_bytes += tensor.array.nbytes
            if self.keep_tensors:
                arrays[tensor.name] = tensor.array
        with self._lock:
            self.deliveries[result.key] += 1
            duplicate = result.key in self.received
            if not duplicate:
                self.received[result.key] = arrays
        for hook in self.after_record:
            hook(result)
        return ResultAck(accepted=not duplicate, duplicate=duplicate)

    def status(self) -> Mapping[str, object]:
        return {"round": self.round_number, "collaborators": sorted(self.collaborators)}
