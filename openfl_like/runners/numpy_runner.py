"""Task runners without TensorFlow: a numpy softmax regression / MLP, and a no-op runner.

``NumpyRunner`` trains real models on the digits in milliseconds, bit-for-bit reproducibly: every
random draw comes from a generator seeded by (runner seed, incoming weights), never from global
state or the clock, and the optimizer state starts fresh at each train() call. That is what lets
the crash-resume test compare final weights exactly with an uninterrupted run.

``NoopRunner`` computes nothing: a model of a chosen size for measuring round overhead and
transfer cost without training time in the way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from openfl_like.core.errors import ConfigError
from openfl_like.runners.base import TaskOutcome, Weights
from openfl_like.runners.common import (
    ShardLike,
    check_positive_int,
    check_xy,
    checked_weights,
    copy_weights,
    require_shard,
    shard_sample_counts,
    train_seed,
)

MODELS = ("softmax", "mlp")
OPTIMIZERS = ("sgd", "adam")
_EVAL_BATCH = 512
_EPS = np.float32(1e-7)


@dataclass(frozen=True)
class NumpyModelSpec:
    """Architecture and optimizer settings of a NumpyRunner (plan: task_runner params)."""

    model: str = "softmax"
    hidden_units: int = 64
    optimizer: str = "sgd"
    learning_rate: float = 0.1
    momentum: float = 0.9
    input_dim: int = 64
    num_classes: int = 10

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ConfigError(f"model: unknown numpy model {self.model!r}; known: {MODELS}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer: unknown {self.optimizer!r}; known: {OPTIMIZERS}")
        check_positive_int("hidden_units", self.hidden_units)
        check_positive_int("input_dim", self.input_dim)
        check_positive_int("num_classes", self.num_classes)
        if not (np.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ConfigError(f"learning_rate: must be > 0, got {self.learning_rate}")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"momentum: must be in [0, 1), got {self.momentum}")

    def layer_shapes(self) -> dict[str, tuple[int, ...]]:
        """Weight names and shapes, in forward order (names follow Keras: layer/variable)."""
        if self.model == "softmax":
            return {
                "dense/kernel": (self.input_dim, self.num_classes),
                "dense/bias": (self.num_classes,),
            }
        return {
            "hidden/kernel": (self.input_dim, self.hidden_units),
            "hidden/bias": (self.hidden_units,),
            "dense/kernel": (self.hidden_units, self.num_classes),
            "dense/bias": (self.num_classes,),
        }


def _glorot(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    limit = np.sqrt(6.0 / (shape[0] + shape[1]))
    return rng.uniform(-limit, limit, size=shape).astype(np.float32)


def _softmax_xent(logits: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probabilities, per-sample loss, per-sample correctness)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    probs = exp / exp.sum(axis=1, keepdims=True)
    picked = probs[np.arange(y.shape[0]), y]
    loss = -np.log(np.maximum(picked, _EPS))
    correct = logits.argmax(axis=1) == y
    return probs, loss, correct


class NumpyRunner:
    """Softmax regression or a one-hidden-layer ReLU MLP, trained with minibatch SGD or Adam.

    ``shard`` may be None for a model-only runner (initial weights, ``evaluate_arrays``).
    """

    def __init__(
        self,
        shard: ShardLike | None = None,
        *,
        seed: int = 0,
        model: str = "softmax",
        hidden_units: int = 64,
        optimizer: str = "sgd",
        learning_rate: float = 0.1,
        momentum: float = 0.9,
        input_dim: int = 64,
        num_classes: int = 10,
    ) -> None:
        self.spec = NumpyModelSpec(
            model=model,
            hidden_units=hidden_units,
            optimizer=optimizer,
            learning_rate=float(learning_rate),
            momentum=float(momentum),
            input_dim=input_dim,
            num_classes=num_classes,
        )
        self.seed = int(seed)
        self.shard = shard
        if shard is not None:
            features = int(np.prod(np.asarray(shard.x_train).shape[1:]))
            if features != self.spec.input_dim:
                raise ConfigError(
                    f"data: {features} features per sample, the model's input_dim is "
                    f"{self.spec.input_dim} (set task_runner.params.input_dim or a data_contract)"
                )
        init_rng = np.random.default_rng([self.seed, 0x1A17])
        self._w: Weights = {}
        for name, shape in self.spec.layer_shapes().items():
            self._w[name] = (
                _glorot(shape, init_rng) if name.endswith("kernel") else np.zeros(shape, np.float32)
            )

    @classmethod
    def from_weights(cls, weights: Mapping[str, np.ndarray], **params: object) -> NumpyRunner:
        """A model-only runner whose architecture is read from the weights' names and shapes."""
        params = dict(params)
        if "hidden/kernel" in weights:
            params.setdefault("model", "mlp")
            params["hidden_units"] = int(weights["hidden/kernel"].shape[1])
        elif "dense/kernel" in weights:
            params.setdefault("model", "softmax")
        else:
            raise ConfigError("weights: not a numpy runner model (no dense/kernel)")
        kernel = weights["hidden/kernel" if "hidden/kernel" in weights else "dense/kernel"]
        params.setdefault("input_dim", int(kernel.shape[0]))
        params.setdefault("num_classes", int(weights["dense/kernel"].shape[1]))
        runner = cls(None, **params)  # type: ignore[arg-type]
        runner.set_weights(weights)
        return runner

    # -- TaskRunner ---------------------------------------------------------------------------

    def get_weights(self) -> Weights:
        return copy_weights(self._w)

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        checked_weights(self._w, weights)
        self._w = copy_weights({name: weights[name] for name in self._w})

    def train(self, *, epochs: int, batch_size: int) -> TaskOutcome:
        epochs = check_positive_int("epochs", epochs)
        batch_size = check_positive_int("batch_size", batch_size)
        shard = require_shard(self.shard, "train")
        x, y = check_xy(shard.x_train, shard.y_train, input_dim=self.spec.input_dim)
        rng = np.random.default_rng(train_seed(self.seed, self._w))
        opt = _Optimizer(self.spec, self._w)
        n = x.shape[0]
        loss_sum, correct_sum = 0.0, 0
        for _ in range(epochs):
            order = rng.permutation(n)
            loss_sum, correct_sum = 0.0, 0  # Keras-style: report the last epoch's running mean
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                loss, correct, grads = self._loss_and_grads(x[idx], y[idx])
                opt.step(self._w, grads)
                loss_sum += float(loss.sum(dtype=np.float64))
                correct_sum += int(correct.sum())
        return TaskOutcome(
            metrics={"loss": loss_sum / n, "accuracy": correct_sum / n},
            data_size=n,
            extra={"epochs": float(epochs)},
        )

    def validate(self, *, batch_size: int) -> TaskOutcome:
        shard = require_shard(self.shard, "validate")
        return self.evaluate_arrays(shard.x_valid, shard.y_valid, batch_size=batch_size)

    def sample_counts(self) -> dict[str, int]:
        return shard_sample_counts(self.shard)

    # -- evaluation without a shard -----------------------------------------------------------

    def evaluate_arrays(
        self, x: np.ndarray, y: np.ndarray, *, batch_size: int = _EVAL_BATCH
    ) -> TaskOutcome:
        """Loss and accuracy of the current weights on (x, y), e.g. the held-out test set."""
        batch_size = check_positive_int("batch_size", batch_size)
        x, y = check_xy(x, y, input_dim=self.spec.input_dim)
        loss_sum, correct_sum = 0.0, 0
        for start in range(0, x.shape[0], batch_size):
            logits, _ = self._forward(x[start : start + batch_size])
            _, loss, correct = _softmax_xent(logits, y[start : start + batch_size])
            loss_sum += float(loss.sum(dtype=np.float64))
            correct_sum += int(correct.sum())
        n = x.shape[0]
        return TaskOutcome(metrics={"loss": loss_sum / n, "accuracy": correct_sum / n}, data_size=n)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities for ``x`` (n, input_dim)."""
        logits, _ = self._forward(np.asarray(x, dtype=np.float32).reshape(len(x), -1))
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    # -- maths --------------------------------------------------------------------------------

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        w = self._w
        if self.spec.model == "softmax":
            return x @ w["dense/kernel"] + w["dense/bias"], None
        hidden = np.maximum(x @ w["hidden/kernel"] + w["hidden/bias"], np.float32(0))
        return hidden @ w["dense/kernel"] + w["dense/bias"], hidden

    def _loss_and_grads(
        self, x: np.ndarray, y: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, Weights]:
        logits, hidden = self._forward(x)
        probs, loss, correct = _softmax_xent(logits, y)
        d_logits = probs
        d_logits[np.arange(y.shape[0]), y] -= np.float32(1)
        d_logits /= np.float32(y.shape[0])
        inputs = x if hidden is None else hidden
        grads: Weights = {
            "dense/kernel": inputs.T @ d_logits,
            "dense/bias": d_logits.sum(axis=0),
        }
        if hidden is not None:
            d_hidden = (d_logits @ self._w["dense/kernel"].T) * (hidden > 0)
            grads["hidden/kernel"] = x.T @ d_hidden
            grads["hidden/bias"] = d_hidden.sum(axis=0)
        return loss, correct, grads


class _Optimizer:
    """SGD with momentum, or Adam; state lives for one train() call (FL rounds start fresh)."""

    _BETA1, _BETA2, _ADAM_EPS = np.float32(0.9), np.float32(0.999), np.float32(1e-7)

    def __init__(self, spec: NumpyModelSpec, weights: Weights) -> None:
        self.spec = spec
        self.lr = np.float32(spec.learning_rate)
        self.m = {k: np.zeros_like(v) for k, v in weights.items()}
        self.v = (
            {k: np.zeros_like(v) for k, v in weights.items()} if spec.optimizer == "adam" else {}
        )
        self.t = 0

    def step(self, weights: Weights, grads: Weights) -> None:
        self.t += 1
        if self.spec.optimizer == "sgd":
            mom = np.float32(self.spec.momentum)
            for k, g in grads.items():
                self.m[k] = mom * self.m[k] + g.astype(np.float32, copy=False)
                weights[k] -= self.lr * self.m[k]
            return
        b1, b2 = self._BETA1, self._BETA2
        lr_t = self.lr * np.float32(np.sqrt(1 - float(b2) ** self.t) / (1 - float(b1) ** self.t))
        for k, g in grads.items():
            self.m[k] = b1 * self.m[k] + (1 - b1) * g
            self.v[k] = b2 * self.v[k] + (1 - b2) * (g * g)
            weights[k] -= lr_t * self.m[k] / (np.sqrt(self.v[k]) + self._ADAM_EPS)


class NoopRunner:
    """No computation: a float32 model of ``size_mib`` MiB over ``num_tensors`` tensors.

    ``train`` returns the weights unchanged, or shifted by ``delta`` so an aggregation has
    something to average; metrics are constants. The runner keeps read-only views of the arrays
    it is given instead of copies, so a 256 MiB benchmark holds one model, not two.
    """

    def __init__(
        self,
        shard: ShardLike | None = None,
        *,
        seed: int = 0,
        size_mib: float = 1.0,
        num_tensors: int = 4,
        delta: float = 0.0,
        data_size: int | None = None,
    ) -> None:
        num_tensors = check_positive_int("num_tensors", num_tensors)
        if not (np.isfinite(size_mib) and size_mib > 0):
            raise ConfigError(f"size_mib: must be > 0, got {size_mib}")
        total = max(num_tensors, int(size_mib * 2**20) // 4)  # float32 elements
        sizes = [
            total // num_tensors + (1 if i < total % num_tensors else 0) for i in range(num_tensors)
        ]
        self.seed = int(seed)
        self.delta = np.float32(delta)
        self.shard = shard
        if data_size is not None:
            self._data_size = check_positive_int("data_size", data_size)
        elif shard is not None:
            self._data_size = len(shard.y_train)
        else:
            self._data_size = 1
        # A cheap deterministic pattern (no RNG: filling 256 MiB with random numbers costs seconds).
        self._w: Weights = {}
        for i, size in enumerate(sizes):
            self._w[f"noop/tensor_{i}"] = _readonly_view(_pattern(size, (self.seed + i) % 13))

    @classmethod
    def from_weights(cls, weights: Mapping[str, np.ndarray], **params: object) -> NoopRunner:
        """A model-only runner holding ``weights`` (any names; float arrays) without copying."""
        kept = {k: v for k, v in params.items() if k not in ("size_mib", "num_tensors")}
        runner = cls(None, size_mib=4 / 2**20, num_tensors=1, **kept)  # type: ignore[arg-type]
        runner._w = {name: _readonly_view(np.asarray(arr)) for name, arr in weights.items()}
        return runner

    def get_weights(self) -> Weights:
        return dict(self._w)

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        checked_weights(self._w, weights)
        self._w = {name: _readonly_view(weights[name]) for name in self._w}

    def train(self, *, epochs: int, batch_size: int) -> TaskOutcome:
        check_positive_int("epochs", epochs)
        check_positive_int("batch_size", batch_size)
        if self.delta != 0:
            self._w = {k: _readonly_view(v + self.delta) for k, v in self._w.items()}
        return TaskOutcome(metrics={"loss": 0.0, "accuracy": 0.0}, data_size=self._data_size)

    def validate(self, *, batch_size: int) -> TaskOutcome:
        check_positive_int("batch_size", batch_size)
        return TaskOutcome(metrics={"loss": 0.0, "accuracy": 0.0}, data_size=self._data_size)

    def sample_counts(self) -> dict[str, int]:
        return {"train": self._data_size, "valid": self._data_size}

    def evaluate_arrays(
        self, x: np.ndarray, y: np.ndarray, *, batch_size: int = _EVAL_BATCH
    ) -> TaskOutcome:
        check_positive_int("batch_size", batch_size)
        return TaskOutcome(metrics={"loss": 0.0, "accuracy": 0.0}, data_size=len(y))


def _pattern(size: int, offset: int) -> np.ndarray:
    """``offset + (k % 97) / 1000`` for k < size, filled by doubling copies (memcpy speed)."""
    arr = np.empty(size, dtype=np.float32)
    head = min(size, 97)
    arr[:head] = np.arange(head, dtype=np.float32) * np.float32(1e-3) + np.float32(offset)
    filled = head
    while filled < size:
        n = min(filled - filled % 97, size - filled)
        arr[filled : filled + n] = arr[:n]
        filled += n
    return arr


def _readonly_view(arr: np.ndarray) -> np.ndarray:
    view = arr.view()
    view.flags.writeable = False
    return view
