"""Scripted deliveries for aggregator tests: deterministic collaborators driven step by step.

``harness.run_federation`` runs whole federations in threads; the tests of the round state, the
round close and the persisted state also need to put the aggregator in an exact situation first
(these results in, that participant silent), which ``Script`` does from the test's own thread.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from openfl_like.core.messages import NamedTensor, ResultKey, TaskResult
from openfl_like.federation import Aggregator
from openfl_like.plan import Plan
from tests.unit.federation.harness import FakeRunner, InMemoryPort, declare_all, initial_weights

EVERYTHING = ("aggregated_model_validation", "train", "locally_tuned_model_validation")
WAIT_SECONDS = 10.0


def new_aggregator(root: Path, plan: Plan, **kwargs: Any) -> Aggregator:
    """An aggregator with its state in ``root/state`` (a new federation unless told otherwise)."""
    kwargs.setdefault("initial_weights", initial_weights())
    agg = Aggregator(plan, state_dir=root / "state", output_dir=root / "out", **kwargs)
    return declare_all(agg, plan)


def train_result(name: str, round_number: int, data_size: int = 10) -> TaskResult:
    return TaskResult(ResultKey(name, round_number, "train"), data_size, {"loss": 1.0})


def stream(weights: Mapping[str, np.ndarray]) -> Iterator[NamedTensor]:
    return iter([NamedTensor(n, a) for n, a in weights.items()])


class Script:
    """One ``FakeRunner`` per collaborator of ``plan``; ``deliver`` plays a collaborator's turn:
    fetch the global model of round ``r``, run ``tasks`` in order, send each result."""

    def __init__(self, plan: Plan) -> None:
        self.runners = {n: FakeRunner(int(plan.shard_for(n))) for n in plan.collaborators}

    def deliver(self, agg: Aggregator, name: str, round_number: int,
                tasks: Iterable[str] = EVERYTHING) -> list[Any]:
        runner = self.runners[name]
        port = InMemoryPort(agg, name)
        runner.set_weights(port.get_aggregated_tensors(round_number, []))
        acks = []
        for task in tasks:
            out = runner.train(epochs=1, batch_size=8) if task == "train" else \
                runner.validate(batch_size=8)
            acks.append(port.send_local_task_results(
                TaskResult(ResultKey(name, round_number, task), out.data_size, out.metrics),
                runner.get_weights() if task == "train" else {}))
        return acks

    def round(self, agg: Aggregator, round_number: int, order: Iterable[str] | None = None
              ) -> None:
        """Everyone delivers everything of ``round_number``; returns once the next is open."""
        for name in order or self.runners:
            self.deliver(agg, name, round_number)
        assert agg.wait_for_round(round_number + 1, WAIT_SECONDS), agg.status()


class KeepAlive:
    """Heartbeats for ``names`` every 50 ms from a thread: what a live collaborator's heartbeat
    thread does while it trains (so only the participants left out look silent)."""

    def __init__(self, agg: Aggregator, names: Iterable[str], every: float = 0.05) -> None:
        self.agg, self.names, self.every = agg, set(names), every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="keepalive")

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            for name in sorted(self.names):
                self.agg.heartbeat(name)

    def __enter__(self) -> KeepAlive:
        for name in self.names:
            self.agg.heartbeat(name)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


class LogWatch(logging.Handler):
    """Records of ``openfl_like`` loggers; ``wait_for(pattern)`` blocks until one matches."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._messages: list[str] = []
        self._cond = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self._cond:
            self._messages.append(record.getMessage())
            self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float = WAIT_SECONDS) -> str:
        regex = re.compile(pattern)
        with self._cond:
            found: list[str] = []

            def matched() -> bool:
                found[:] = [m for m in self._messages if regex.search(m)]
                return bool(found)

            assert self._cond.wait_for(matched, timeout), (
                f"no log line matched {pattern!r} within {timeout:g} s: {self._messages[-20:]}")
            return found[0]

    def messages(self) -> list[str]:
        with self._cond:
            return list(self._messages)


@contextlib.contextmanager
def watch_logs() -> Iterator[LogWatch]:
    logger = logging.getLogger("openfl_like")
    handler = LogWatch()
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
