"""A collaborator told to stop by a real signal: the task in progress ends, the wait is cut."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pytest

from openfl_like.app.collaborator import StoppablePort, StoppableRunner
from openfl_like.app.signals import SignalStop, StoppedBySignal
from openfl_like.core.messages import (
    HandshakeReply,
    HeartbeatReply,
    PollStatus,
    ResultAck,
    TaskKind,
    TaskResult,
    TaskSpec,
    TasksReply,
)
from openfl_like.federation.collaborator import Collaborator, CollaboratorSettings
from openfl_like.runners.base import TaskOutcome, Weights

pytestmark = pytest.mark.timeout(30)

TASKS = (TaskSpec("train", TaskKind.TRAIN, 0),
         TaskSpec("locally_tuned_model_validation", TaskKind.VALIDATE_LOCAL, 0))


def sigterm_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


class FakePort:
    """Round 0 with two tasks, then long-polls; ``on_poll`` runs inside the second poll."""

    def __init__(self, on_poll: Callable[[], None] | None = None) -> None:
        self.polls = 0
        self.sent: list[str] = []
        self.on_poll = on_poll

    def handshake(self, plan_digest: str, fingerprint: Mapping[str, str],
                  sample_counts: Mapping[str, int], contract_digest: str = "") -> HandshakeReply:
        return HandshakeReply(round_number=0, rounds_total=3)

    def get_tasks(self) -> TasksReply:
        self.polls += 1
        if self.polls == 1:
            return TasksReply(PollStatus.WORK, 0, TASKS)
        if self.on_poll is not None:
            self.on_poll()
        time.sleep(10)  # a long-poll with nothing to do
        return TasksReply(PollStatus.WAIT, 0)

    def get_aggregated_tensors(self, round_number: int, names: Sequence[str]
                               ) -> dict[str, np.ndarray]:
        return {"w": np.zeros(2, dtype=np.float32)}

    def send_local_task_results(self, result: TaskResult, tensors: Mapping[str, np.ndarray]
                                ) -> ResultAck:
        # (one upload per round: the metrics-only results ride along in ``also``)
        self.sent.extend(r.key.task_name for r in (result, *result.also))
        return ResultAck(accepted=True)

    def heartbeat(self) -> HeartbeatReply:
        raise AssertionError("heartbeat is off")


class FakeRunner:
    def __init__(self, during_train: Callable[[], None] | None = None) -> None:
        self.ran: list[str] = []
        self.during_train = during_train

    def get_weights(self) -> Weights:
        return {"w": np.ones(2, dtype=np.float32)}

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        pass

    def train(self, *, epochs: int, batch_size: int) -> TaskOutcome:
        if self.during_train is not None:
            self.during_train()
        self.ran.append("train")
        return TaskOutcome({"loss": 1.0}, data_size=10)

    def validate(self, *, batch_size: int) -> TaskOutcome:
        self.ran.append("validate")
        return TaskOutcome({"accuracy": 0.5}, data_size=10)

    def sample_counts(self) -> dict[str, int]:
        return {"train": 10, "valid": 10}


def run_with_signals(port: FakePort, runner: FakeRunner) -> tuple[Collaborator, float]:
    """The way run_collaborator wires it; returns the collaborator and the seconds it took."""
    collaborator: Collaborator | None = None

    def on_stop(_: signal.Signals) -> None:
        assert collaborator is not None
        collaborator.stop()

    started = time.monotonic()
    with SignalStop(on_stop=on_stop) as stop:
        collaborator = Collaborator(
            "col1", StoppablePort(port, stop), StoppableRunner(runner, stop),
            CollaboratorSettings(plan_digest="d", fingerprint={}),
        )
        with pytest.raises(StoppedBySignal) as info:
            collaborator.run()
            stop.raise_if_stopped()
    assert info.value.signum is signal.SIGTERM
    return collaborator, time.monotonic() - started


def test_signal_during_a_task_lets_it_finish_and_starts_no_other() -> None:
    # Prepare
    port, runner = FakePort(), FakeRunner(during_train=sigterm_self)

    # Execute
    _, seconds = run_with_signals(port, runner)

    # Assert: training ended and its result was sent; the validation after it never started.
    assert runner.ran == ["train"]
    assert port.sent == ["train"]
    assert port.polls == 1
    assert seconds < 5


def test_signal_during_a_long_poll_cuts_it_short() -> None:
    # Prepare
    port, runner = FakePort(on_poll=sigterm_self), FakeRunner()

    # Execute
    _, seconds = run_with_signals(port, runner)

    # Assert: the round's work is all done and sent; the 10 s poll did not run out.
    assert runner.ran == ["train", "validate"]
    assert port.sent == ["train", "locally_tuned_model_validation"]
    assert seconds < 5
