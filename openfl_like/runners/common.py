"""Pieces every runner shares: the shard shape it reads, weight checks, seeds, metrics.

Runners do not import ``openfl_like.data`` (the two packages sit side by side in the layer rules):
they read any object shaped like :class:`ShardLike`, which ``openfl_like.data.digits.Shard`` is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Protocol

import numpy as np

from openfl_like.core.errors import ConfigError, ProtocolError
from openfl_like.runners.base import Weights


class ShardLike(Protocol):
    """What a runner needs from a data shard (``openfl_like.data.digits.Shard`` fits)."""

    @property
    def x_train(self) -> np.ndarray: ...
    @property
    def y_train(self) -> np.ndarray: ...
    @property
    def x_valid(self) -> np.ndarray: ...
    @property
    def y_valid(self) -> np.ndarray: ...


def checked_weights(expected: Mapping[str, np.ndarray], given: Mapping[str, np.ndarray]) -> None:
    """Raise ProtocolError unless ``given`` has exactly the names, dtypes and shapes expected."""
    missing = sorted(set(expected) - set(given))
    extra = sorted(set(given) - set(expected))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if extra:
            parts.append(f"unexpected {', '.join(extra)}")
        raise ProtocolError(f"weights do not match the model: {'; '.join(parts)}")
    for name, ref in expected.items():
        arr = given[name]
        if not isinstance(arr, np.ndarray):
            raise ProtocolError(
                f"weights[{name}]: expected a numpy array, got {type(arr).__name__}"
            )
        if arr.dtype != ref.dtype:
            raise ProtocolError(f"weights[{name}]: dtype {arr.dtype}, the model has {ref.dtype}")
        if arr.shape != ref.shape:
            raise ProtocolError(
                f"weights[{name}]: shape {arr.shape}, the model has {tuple(ref.shape)}"
            )


def weights_digest(weights: Mapping[str, np.ndarray]) -> bytes:
    """A digest of names, dtypes, shapes and bytes, independent of dict order."""
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(weights):
        arr = np.ascontiguousarray(weights[name])
        h.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
        h.update(arr.reshape(-1).view(np.uint8).data)  # bytes view: also for bfloat16
    return h.digest()


def train_seed(seed: int, weights: Mapping[str, np.ndarray]) -> list[int]:
    """Seed material for one train() call: a pure function of (runner seed, incoming weights).

    Deriving the shuffle order from the weights rather than from a call counter makes a round's
    result independent of the runner's history: a collaborator that restarts, or repeats a task
    after an aggregator crash, trains exactly as an uninterrupted run would.
    """
    d = weights_digest(weights)
    return [int(seed), int.from_bytes(d[:8], "little"), int.from_bytes(d[8:], "little")]


def shard_sample_counts(shard: ShardLike | None) -> dict[str, int]:
    """What a collaborator declares at its handshake: its train and validation sample counts
    (the aggregator never weights one of its results above them)."""
    if shard is None:
        return {}
    return {"train": len(shard.y_train), "valid": len(shard.y_valid)}


def require_shard(shard: ShardLike | None, what: str) -> ShardLike:
    if shard is None:
        raise ConfigError(f"{what} needs a data shard; this runner was built for evaluation only")
    return shard


def check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"{name}: must be an integer >= 1, got {value!r}")
    return int(value)


TASKS = ("classification", "regression")


def check_labels(y: np.ndarray, n: int, *, task: str = "classification") -> np.ndarray:
    """Labels for ``n`` samples: int64 class indices (n,) for classification; finite float32
    targets, (n,) or (n, ...), for regression. ConfigError otherwise."""
    y = np.asarray(y)
    if task == "classification":
        if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
            raise ConfigError(f"labels: expected {n} integer labels, got {y.dtype} {y.shape}")
        return y.astype(np.int64, copy=False)
    if task != "regression":
        raise ConfigError(f"task: must be one of {', '.join(TASKS)}, got {task!r}")
    if y.ndim == 0 or y.shape[0] != n or y.dtype == np.bool_ or not (
        np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)
    ):
        raise ConfigError(f"labels: expected {n} numeric targets, got {y.dtype} {y.shape}")
    targets = y.astype(np.float32, copy=False)
    if not np.isfinite(targets).all():
        raise ConfigError("labels: regression targets must be finite numbers")
    return targets


def check_xy(
    x: np.ndarray, y: np.ndarray, *, input_dim: int, task: str = "classification"
) -> tuple[np.ndarray, np.ndarray]:
    """Features as float32 (n, input_dim) and labels as ``check_labels`` gives them (int64
    class indices, or float32 regression targets), or ConfigError."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        x = x.reshape(x.shape[0], -1) if x.ndim > 2 else x
    if x.ndim != 2 or x.shape[1] != input_dim:
        raise ConfigError(f"features: expected shape (n, {input_dim}), got {x.shape}")
    y = check_labels(y, x.shape[0], task=task)
    if x.shape[0] == 0:
        raise ConfigError("cannot train or evaluate on an empty data set")
    return x, y


def copy_weights(weights: Mapping[str, np.ndarray]) -> Weights:
    return {name: np.array(arr, copy=True) for name, arr in weights.items()}
