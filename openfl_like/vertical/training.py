"""The training and evaluation loops of the two parties, over a communicator and a model half.

Kept free of TensorFlow (the halves are Protocols; ``keras_split`` implements them), so the
protocol between the parties is readable in one place and tested without a real model.

Per party, in order:

1. ``check_same_samples`` and ``agree_checkpoint`` (``agreement``); both restore the agreed
   version, log "resuming from checkpoint v (epoch e, sample i)" and ``set_step(v)``.
2. Training. The leader announces every epoch it (re)starts with
   ``send_reader_state("train", block_id=epoch, sample_index=offset)`` and ends with
   ``terminate_reader("train")``; the follower loops on ``recv_reader_state("train")`` until
   it is terminated, so it needs no epoch count of its own. Each step (one batch of the epoch's
   order, ``party_data.epoch_order``): follower ``send("embedding")``, leader
   ``send("gradient")``, both ``add_step()``; every ``every_steps`` steps both save a
   checkpoint whose version is the step.
3. Evaluation: reader state ("test", 0, 0); the follower sends "test_embedding" per batch; the
   leader counts correct predictions, terminates the "test" reader and sends "test_accuracy".

``check_stop`` is called at every step boundary: it raises to stop (e.g. on SIGTERM).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

import numpy as np

from openfl_like.core.errors import DataError, ProtocolError
from openfl_like.core.logging import get_logger
from openfl_like.core.vertical import PartyRole
from openfl_like.plan.vertical_config import VerticalPlan
from openfl_like.vertical.agreement import (
    PartyComm,
    agree_checkpoint,
    check_same_samples,
    fingerprint,
)
from openfl_like.vertical.checkpoints import CheckpointMeta, CheckpointStore
from openfl_like.vertical.party_data import PartyData, epoch_order

log = get_logger(__name__)

TRAIN, TEST = "train", "test"
EMBEDDING, GRADIENT = "embedding", "gradient"
TEST_EMBEDDING, TEST_ACCURACY = "test_embedding", "test_accuracy"


class _Half(Protocol):
    def state(self) -> dict[str, np.ndarray]: ...

    def restore(self, arrays: dict[str, np.ndarray], *, source: str) -> None: ...


class FollowerModel(_Half, Protocol):
    def forward(self, x: np.ndarray) -> np.ndarray: ...

    def backward(self, gradient: np.ndarray) -> None: ...

    def embed(self, x: np.ndarray) -> np.ndarray: ...


class LeaderModel(_Half, Protocol):
    def train_step(self, x: np.ndarray, y: np.ndarray, embedding: np.ndarray
                   ) -> tuple[float, int, np.ndarray]: ...

    def predict(self, x: np.ndarray, embedding: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class PartyResult:
    """How a party's run ended."""

    role: PartyRole
    test_accuracy: float
    steps: int
    resumed_from: int  # 0: a fresh start
    seconds: float


def _nothing() -> None:
    return None


class PartyTraining:
    """One party's whole run: agreement, training, evaluation (module docstring)."""

    def __init__(self, plan: VerticalPlan, role: PartyRole, comm: PartyComm, data: PartyData,
                 half: LeaderModel | FollowerModel, store: CheckpointStore, *,
                 check_stop: Callable[[], None] = _nothing,
                 progress: Callable[[str], None] = log.info) -> None:
        self.plan, self.role, self.comm, self.data = plan, role, comm, data
        self.half, self.store = half, store
        self.check_stop, self.progress = check_stop, progress
        self.peer = plan.peer(role).name
        self.settings = plan.model

    # -- start-up ------------------------------------------------------------------------------

    def start(self) -> tuple[int, int, int]:
        """Agree with the peer, restore; (version, epoch, sample index) to go on from."""
        check_same_samples(self.comm, self.role, fingerprint(self.plan, self.data),
                           peer=self.peer)
        version = agree_checkpoint(self.comm, self.role, self.store.valid_versions(),
                                   peer=self.peer)
        epoch = offset = 0
        if version:
            meta, arrays = self.store.load(version)
            self.half.restore(arrays, source=str(self.store.path(version)))
            self.store.drop_newer_than(version)
            epoch, offset = meta.epoch, meta.sample_index
            self.progress(f"resuming from checkpoint {version} (epoch {epoch}, sample {offset})")
        else:
            self.store.clear()  # an older run's files would mix with this run's versions
            self.progress("starting from scratch (no common checkpoint)")
        self.comm.set_step(version)
        return version, epoch, offset

    def run(self) -> PartyResult:
        began = time.monotonic()
        version, epoch, offset = self.start()
        if self.role is PartyRole.LEADER:
            self._train_leader(epoch, offset)
            accuracy = self._evaluate_leader()
        else:
            self._train_follower()
            accuracy = self._evaluate_follower()
        return PartyResult(role=self.role, test_accuracy=accuracy, steps=self.comm.step,
                           resumed_from=version, seconds=time.monotonic() - began)

    # -- training ------------------------------------------------------------------------------

    def _batches(self, epoch: int, offset: int) -> tuple[np.ndarray, int]:
        size = len(self.data.train)
        if not 0 <= offset <= size or epoch < 0:
            raise ProtocolError(f"reader state (epoch {epoch}, sample {offset}) is outside the "
                                f"{size} training samples")
        return epoch_order(self.settings.seed, epoch, size), size

    @staticmethod
    def _labels(y: np.ndarray | None) -> np.ndarray:
        if y is None:
            raise DataError("the leader's data has no labels (y)")
        return y

    def _recv_finite(self, name: str) -> np.ndarray:
        """The peer's float32 tensor of this step; NaN or infinity would silently ruin this
        party's model, so it is refused (the peer passed TLS, its numbers are still checked)."""
        array = self.comm.recv(name, dtype=np.float32)
        if not np.isfinite(array).all():
            raise ProtocolError(f"{self.peer} sent {name!r} at step {self.comm.step} with NaN "
                                "or infinite values")
        return array

    def _after_step(self, epoch: int, offset: int, size: int) -> None:
        self.comm.add_step()
        step = self.comm.step
        if step % self.plan.checkpoint.every_steps == 0:
            position = (epoch + 1, 0) if offset >= size else (epoch, offset)
            self.store.save(CheckpointMeta(step, *position), self.half.state())
            log.debug("checkpoint %d saved (epoch %d, sample %d)", step, *position)

    def _train_leader(self, first_epoch: int, first_offset: int) -> None:
        half = cast(LeaderModel, self.half)
        x, y = self.data.train.x, self._labels(self.data.train.y)
        batch = self.settings.batch_size
        for epoch in range(first_epoch, self.settings.epochs):
            offset = first_offset if epoch == first_epoch else 0
            order, size = self._batches(epoch, offset)
            self.comm.send_reader_state(TRAIN, epoch, offset)
            began, steps, loss_sum, correct, seen = time.monotonic(), 0, 0.0, 0, 0
            while offset < size:
                self.check_stop()
                rows = order[offset:offset + batch]
                embedding = self._recv_finite(EMBEDDING)
                loss, right, gradient = half.train_step(x[rows], y[rows], embedding)
                self.comm.send(GRADIENT, gradient)
                offset += rows.size
                loss_sum, correct, seen, steps = (loss_sum + loss * rows.size, correct + right,
                                                  seen + rows.size, steps + 1)
                self._after_step(epoch, offset, size)
            if seen:
                self.progress(f"epoch {epoch + 1}/{self.settings.epochs}: loss "
                              f"{loss_sum / seen:.4f}, accuracy {correct / seen:.4f} ({steps} "
                              f"steps, {time.monotonic() - began:.1f} s)")
        self.comm.terminate_reader(TRAIN)

    def _train_follower(self) -> None:
        half = cast(FollowerModel, self.half)
        x = self.data.train.x
        batch = self.settings.batch_size
        while (state := self.comm.recv_reader_state(TRAIN)) is not None:
            epoch, offset = state.block_id, state.sample_index
            order, size = self._batches(epoch, offset)
            began, steps = time.monotonic(), 0
            while offset < size:
                self.check_stop()
                rows = order[offset:offset + batch]
                self.comm.send(EMBEDDING, half.forward(x[rows]))
                half.backward(self._recv_finite(GRADIENT))
                offset += rows.size
                steps += 1
                self._after_step(epoch, offset, size)
            self.progress(f"epoch {epoch + 1}: {steps} steps ({time.monotonic() - began:.1f} s)")

    # -- evaluation ----------------------------------------------------------------------------

    def _evaluate_leader(self) -> float:
        half = cast(LeaderModel, self.half)
        x, y = self.data.test.x, self._labels(self.data.test.y)
        batch = self.settings.batch_size
        self.comm.send_reader_state(TEST, 0, 0)
        correct = 0
        for start in range(0, len(self.data.test), batch):
            self.check_stop()
            embedding = self._recv_finite(TEST_EMBEDDING)
            correct += int(np.sum(half.predict(x[start:start + batch], embedding)
                                  == y[start:start + batch]))
            self.comm.add_step()
        self.comm.terminate_reader(TEST)
        accuracy = correct / len(self.data.test)
        self.comm.send(TEST_ACCURACY, np.array([accuracy], dtype=np.float64))
        return accuracy

    def _evaluate_follower(self) -> float:
        half = cast(FollowerModel, self.half)
        state = self.comm.recv_reader_state(TEST)
        if state is None:
            raise ProtocolError(f"{self.peer} ended the test reader before starting it")
        x = self.data.test.x
        batch = self.settings.batch_size
        if not 0 <= state.sample_index <= len(self.data.test):
            raise ProtocolError(f"test reader state (sample {state.sample_index}) is outside "
                                f"the {len(self.data.test)} test samples")
        for start in range(state.sample_index, len(self.data.test), batch):
            self.check_stop()
            self.comm.send(TEST_EMBEDDING, half.embed(x[start:start + batch]))
            self.comm.add_step()
        if self.comm.recv_reader_state(TEST) is not None:
            raise ProtocolError(f"{self.peer} restarted the test reader while it was read")
        accuracy = float(self.comm.recv(TEST_ACCURACY, dtype=np.float64)[0])
        if not 0.0 <= accuracy <= 1.0:
            raise DataError(f"{self.peer} sent a test accuracy of {accuracy}")
        return accuracy
