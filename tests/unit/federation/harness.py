"""In-process federation harness: plans written to tmp dirs, a fake runner, an in-memory port."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from openfl_like.core.errors import UnavailableError
from openfl_like.core.messages import (
    HandshakeReply,
    HeartbeatReply,
    NamedTensor,
    ResultAck,
    TaskResult,
    TasksReply,
)
from openfl_like.federation import Aggregator, Collaborator, CollaboratorSettings
from openfl_like.federation.collaborator import CollaboratorSummary
from openfl_like.plan import Plan, load_plan, plan_digest, plan_fingerprint
from openfl_like.runners.base import TaskOutcome, TaskRunner

COLS = ("col1", "col2", "col3")


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def write_plan(folder: Path, overrides: Mapping[str, Any] | None = None,
               cols: Sequence[str] = COLS) -> Path:
    base: dict[str, Any] = {
        "federation": {"name": "test"},
        "aggregator": {"rounds_to_train": 3, "write_tensorboard": False, "write_plot": False},
        "collaborator": {"epochs": 1, "batch_size": 8, "heartbeat_seconds": 0},
        "task_runner": {"name": "numpy"},
        "stragglers": {"round_deadline_seconds": 30, "min_collaborators": 2},
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plan.yaml").write_text(yaml.safe_dump(_merge(base, overrides or {})))
    (folder / "cols.yaml").write_text(yaml.safe_dump({"collaborators": list(cols)}))
    (folder / "data.yaml").write_text(yaml.safe_dump({c: i for i, c in enumerate(cols)}))
    return folder


def make_plan(tmp_path: Path, overrides: Mapping[str, Any] | None = None,
              cols: Sequence[str] = COLS) -> Plan:
    return load_plan(write_plan(tmp_path / "plan", overrides, cols))


def initial_weights() -> dict[str, np.ndarray]:
    return {
        "dense/kernel": np.arange(6, dtype=np.float32).reshape(2, 3) / 10,
        "dense/bias": np.zeros(3, dtype=np.float32),
        "steps": np.array(0, dtype=np.int64),
    }


GENEROUS = {"train": 10**6, "valid": 10**6}


def declare_all(aggregator: Aggregator, plan: Plan,
                counts: Mapping[str, int] = GENEROUS) -> Aggregator:
    """Handshake every collaborator of ``plan`` with ``counts`` (what a real client does before
    its first result; tests that feed results directly need it too)."""
    for name in plan.collaborators:
        aggregator.handshake(name, plan_digest(plan), plan_fingerprint(plan), counts)
    return aggregator


class FakeRunner:
    """Deterministic 'training': w <- w / 2 + (shard + 1); steps += 1. No randomness at all."""

    def __init__(self, shard: int) -> None:
        self.shard = shard
        self.weights = initial_weights()
        self.data_size = 10 * (shard + 1)
        self.trained = 0

    def get_weights(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self.weights.items()}

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        self.weights = {k: np.array(v, copy=True) for k, v in weights.items()}

    def train(self, *, epochs: int, batch_size: int) -> TaskOutcome:
        for name in ("dense/kernel", "dense/bias"):
            self.weights[name] = (self.weights[name] / 2 + np.float32(self.shard + 1)).astype(
                np.float32)
        self.weights["steps"] = np.array(int(self.weights["steps"]) + epochs, dtype=np.int64)
        self.trained += 1
        return TaskOutcome({"loss": self._loss(), "accuracy": 0.5}, self.data_size)

    def validate(self, *, batch_size: int) -> TaskOutcome:
        loss = self._loss()
        return TaskOutcome({"loss": loss, "accuracy": 1.0 / (1.0 + loss)}, self.data_size)

    def sample_counts(self) -> dict[str, int]:
        return {"train": self.data_size, "valid": self.data_size}

    def _loss(self) -> float:
        return float(np.abs(self.weights["dense/kernel"] - 3.0).mean())


class InMemoryPort:
    """AggregatorPort that calls the Aggregator directly (what the gRPC client does remotely)."""

    def __init__(self, aggregator: Aggregator, name: str, *, wait_seconds: float = 5.0) -> None:
        self.aggregator, self.name, self.wait_seconds = aggregator, name, wait_seconds

    def handshake(self, plan_digest: str, fingerprint: Mapping[str, str],
                  sample_counts: Mapping[str, int] | None = None,
                  contract_digest: str = "") -> HandshakeReply:
        return self.aggregator.handshake(self.name, plan_digest, fingerprint, sample_counts,
                                         contract_digest)

    def get_tasks(self) -> TasksReply:
        return self.aggregator.get_tasks(self.name, self.wait_seconds)

    def get_aggregated_tensors(self, round_number: int, names: Sequence[str]
                               ) -> dict[str, np.ndarray]:
        return {t.name: np.array(t.array) for t in self.aggregator.get_aggregated_tensors(
            self.name, round_number, names, ())}

    def send_local_task_results(self, result: TaskResult, tensors: Mapping[str, np.ndarray]
                                ) -> ResultAck:
        # UNAVAILABLE (a round closing, a full disk) is retried, as the gRPC client does.
        for _ in range(500):
            stream = (NamedTensor(n, a, result.key.round_number) for n, a in tensors.items())
            try:
                return self.aggregator.send_local_task_results(result, stream)
            except UnavailableError:
                time.sleep(0.01)
        raise AssertionError(f"{result.key}: still unavailable after 5 s")

    def heartbeat(self) -> HeartbeatReply:
        return self.aggregator.heartbeat(self.name)


def run_federation(plan: Plan, aggregator: Aggregator, names: Sequence[str] | None = None,
                   timeout: float = 30.0,
                   make_runner: Callable[[str], TaskRunner] | None = None,
                   ) -> dict[str, CollaboratorSummary]:
    """Run collaborators in threads until the aggregator is done; return their summaries.

    ``make_runner(name)`` builds each collaborator's runner (default: a ``FakeRunner`` on its
    shard index).
    """
    settings = CollaboratorSettings.from_plan(plan)
    summaries: dict[str, CollaboratorSummary] = {}
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            runner = make_runner(name) if make_runner else FakeRunner(int(plan.shard_for(name)))
            summaries[name] = Collaborator(name, InMemoryPort(aggregator, name), runner,
                                           settings).run()
        except BaseException as exc:  # reported to the test below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,), daemon=True)
               for n in (names or plan.collaborators)]
    for t in threads:
        t.start()
    assert aggregator.wait_until_done(timeout), (errors, aggregator.status())
    for t in threads:
        t.join(timeout)
        assert not t.is_alive()
    if errors:
        raise errors[0]
    return summaries
