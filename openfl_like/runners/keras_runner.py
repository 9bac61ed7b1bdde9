"""Keras (TensorFlow backend) task runner: the only module of the project that imports TensorFlow.

It is imported lazily (``runners.registry`` loads it for the "keras" runner only), so importing
TensorFlow at the top here costs nothing to processes that never train a Keras model.

Models come from builder functions: the built-in "digits_cnn" and "digits_mlp", or, only when the
operator allows it (``allow_custom=True``), an installed object named "module:attr". A builder
takes no argument and returns an uncompiled ``keras.Model`` whose input is the flat 64-feature
vector; the runner compiles it. Weights are named ``layer/variable`` (the Keras variable path
without the model's own name), so names do not depend on how many models a process has built.
Name your layers in a custom builder for the same reason.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import numpy as np
import tensorflow as tf

from openfl_like.core.errors import ConfigError, ProtocolError
from openfl_like.core.logging import get_logger
from openfl_like.runners.base import TaskOutcome, Weights
from openfl_like.runners.common import (
    ShardLike,
    check_positive_int,
    check_xy,
    checked_weights,
    require_shard,
    shard_sample_counts,
    train_seed,
)

log = get_logger(__name__)

INPUT_DIM = 64
NUM_CLASSES = 10
_EVAL_BATCH = 512


def _configure_tensorflow() -> None:
    """One-time process settings: few threads (a tiny model on a shared 2-core host) and
    deterministic kernels. Must run before TensorFlow executes its first op."""
    threads = int(os.environ.get("FX_TF_THREADS", "1"))
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # the runtime was already initialised by someone else: keep its setting
        log.debug("TensorFlow threading already initialised; keeping its settings")
    tf.config.experimental.enable_op_determinism()


_configure_tensorflow()


# -- built-in builders --------------------------------------------------------------------------


def digits_cnn() -> keras.Model:
    """Small CNN for 8x8 digits: 2 conv layers, max-pool, dense 128, dropout, softmax."""
    return keras.Sequential(
        [
            keras.Input((INPUT_DIM,), name="pixels"),
            keras.layers.Reshape((8, 8, 1), name="image"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1"),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2"),
            keras.layers.MaxPooling2D(2, name="pool"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(128, activation="relu", name="fc"),
            keras.layers.Dropout(0.25, name="dropout"),
            keras.layers.Dense(NUM_CLASSES, activation="softmax", name="logits"),
        ],
        name="digits_cnn",
    )


def digits_mlp() -> keras.Model:
    """Two hidden ReLU layers over the 64 pixels."""
    return keras.Sequential(
        [
            keras.Input((INPUT_DIM,), name="pixels"),
            keras.layers.Dense(128, activation="relu", name="fc1"),
            keras.layers.Dense(64, activation="relu", name="fc2"),
            keras.layers.Dense(NUM_CLASSES, activation="softmax", name="logits"),
        ],
        name="digits_mlp",
    )


BUILDERS: dict[str, Callable[[], keras.Model]] = {
    "digits_cnn": digits_cnn,
    "digits_mlp": digits_mlp,
}


def resolve_builder(name: str, *, allow_custom: bool = False) -> Callable[[], keras.Model]:
    """A built-in builder by name, or "module:attr" when the operator allows custom code."""
    if name in BUILDERS:
        return BUILDERS[name]
    if ":" not in name:
        raise ConfigError(
            f"builder: unknown model builder {name!r}; built-in: {', '.join(sorted(BUILDERS))}"
        )
    if not allow_custom:
        raise ConfigError(
            f"builder: {name!r} names custom code, which this process does not allow "
            "(set allow_custom in the local plan to permit it)"
        )
    module_name, _, attr = name.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"builder: cannot load {name!r}: {exc}") from exc
    if not callable(obj):
        raise ConfigError(f"builder: {name!r} is not callable")
    builder: Callable[[], keras.Model] = obj
    return builder


def _weight_names(model: keras.Model) -> list[str]:
    prefix = f"{model.name}/"
    names = [v.path[len(prefix) :] if v.path.startswith(prefix) else v.path for v in model.weights]
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ConfigError(f"builder: the model's weight names are not unique: {', '.join(dupes)}")
    return names


def build_model(builder: str = "digits_cnn", *, seed: int = 0, allow_custom: bool = False) -> Any:
    """Build the model of ``builder`` with initial weights determined by ``seed`` (uncompiled)."""
    make = resolve_builder(builder, allow_custom=allow_custom)
    keras.utils.set_random_seed(int(seed))
    model = make()
    if not isinstance(model, keras.Model):
        raise ConfigError(
            f"builder: {builder!r} returned {type(model).__name__}, not a keras.Model"
        )
    if model.inputs and tuple(model.inputs[0].shape[1:]) != (INPUT_DIM,):
        raise ConfigError(
            f"builder: {builder!r} takes input {tuple(model.inputs[0].shape[1:])}, "
            f"expected ({INPUT_DIM},)"
        )
    return model


class KerasRunner:
    """Trains a Keras model on one shard; weights named ``layer/variable``.

    Training is a small loop over one compiled step (``tf.function``) rather than ``model.fit``:
    fit builds a tf.data pipeline per call, which costs more than an epoch of this model. The
    loop also keeps every random choice ours: the shuffle order comes from a numpy generator and
    the dropout generators are reseeded, both from (seed, incoming weights); the optimizer state
    is reset at every train() call. So a round's result does not depend on the runner's history,
    and with TensorFlow's op determinism on it is reproducible on one machine.
    """

    def __init__(
        self,
        shard: ShardLike | None = None,
        *,
        seed: int = 0,
        builder: str = "digits_cnn",
        allow_custom: bool = False,
        learning_rate: float = 3e-3,
    ) -> None:
        if not (np.isfinite(learning_rate) and learning_rate > 0):
            raise ConfigError(f"learning_rate: must be > 0, got {learning_rate}")
        self.seed = int(seed)
        self.shard = shard
        self.builder = builder
        self.model = build_model(builder, seed=self.seed, allow_custom=allow_custom)
        self._names = _weight_names(self.model)
        self._vars = dict(zip(self._names, self.model.weights, strict=True))
        self._seed_vars = [
            v for v in self.model.variables if v.path.endswith("seed_generator_state")
        ]
        self.optimizer = keras.optimizers.Adam(learning_rate=float(learning_rate))
        self.optimizer.build(self.model.trainable_variables)
        self._loss = keras.losses.SparseCategoricalCrossentropy(reduction="sum")
        self._train_step = tf.function(self._train_step_eager, reduce_retracing=True)
        self._eval_step = tf.function(self._eval_step_eager, reduce_retracing=True)

    @classmethod
    def from_weights(cls, weights: Mapping[str, np.ndarray], **params: Any) -> KerasRunner:
        """A model-only runner (no shard) holding ``weights``: for evaluation and export."""
        runner = cls(None, **params)
        runner.set_weights(weights)
        return runner

    # -- TaskRunner ---------------------------------------------------------------------------

    def get_weights(self) -> Weights:
        return {name: np.array(var.numpy()) for name, var in self._vars.items()}

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        current = {name: _zeros_like_var(var) for name, var in self._vars.items()}
        checked_weights(current, weights)
        for name, var in self._vars.items():
            var.assign(weights[name])

    def train(self, *, epochs: int, batch_size: int) -> TaskOutcome:
        epochs = check_positive_int("epochs", epochs)
        batch_size = check_positive_int("batch_size", batch_size)
        shard = require_shard(self.shard, "train")
        x, y = check_xy(shard.x_train, shard.y_train, input_dim=INPUT_DIM)
        rng = np.random.default_rng(train_seed(self.seed, self.get_weights()))
        self._reseed_dropout(rng)
        self._reset_optimizer()
        n = x.shape[0]
        loss_sum, correct = 0.0, 0
        for _ in range(epochs):
            order = rng.permutation(n)
            loss_sum, correct = 0.0, 0  # Keras-style: report the last epoch's running mean
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                batch_loss, batch_correct = self._train_step(
                    tf.constant(x[idx]), tf.constant(y[idx])
                )
                loss_sum += float(batch_loss)
                correct += int(batch_correct)
        return TaskOutcome(
            metrics={"loss": loss_sum / n, "accuracy": correct / n},
            data_size=n,
            extra={"epochs": float(epochs)},
        )

    def validate(self, *, batch_size: int) -> TaskOutcome:
        shard = require_shard(self.shard, "validate")
        return self.evaluate_arrays(shard.x_valid, shard.y_valid, batch_size=batch_size)

    def sample_counts(self) -> dict[str, int]:
        return shard_sample_counts(self.shard)

    # -- evaluation and export ----------------------------------------------------------------

    def evaluate_arrays(
        self, x: np.ndarray, y: np.ndarray, *, batch_size: int = _EVAL_BATCH
    ) -> TaskOutcome:
        """Loss and accuracy of the current weights on (x, y), e.g. the held-out test set."""
        batch_size = check_positive_int("batch_size", batch_size)
        x, y = check_xy(x, y, input_dim=INPUT_DIM)
        loss_sum, correct = 0.0, 0
        for start in range(0, x.shape[0], batch_size):
            batch_loss, batch_correct = self._eval_step(
                tf.constant(x[start : start + batch_size]),
                tf.constant(y[start : start + batch_size]),
            )
            loss_sum += float(batch_loss)
            correct += int(batch_correct)
        n = x.shape[0]
        return TaskOutcome(metrics={"loss": loss_sum / n, "accuracy": correct / n}, data_size=n)

    def predict(self, x: np.ndarray, *, batch_size: int = _EVAL_BATCH) -> np.ndarray:
        """Class probabilities for ``x`` (n, 64)."""
        x = np.asarray(x, np.float32)
        parts = [
            np.asarray(self.model(tf.constant(x[i : i + batch_size]), training=False))
            for i in range(0, x.shape[0], batch_size)
        ]
        return np.concatenate(parts) if parts else np.empty((0, NUM_CLASSES), np.float32)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model with its current weights as a ``.keras`` file, atomically."""
        target = Path(path)
        if target.suffix != ".keras":
            raise ConfigError(f"model file: {target} must end in .keras")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.stem}.", suffix=".partial.keras", dir=target.parent
        )
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            self.model.save(tmp)
            with tmp.open("rb") as fh:
                os.fsync(fh.fileno())
            tmp.chmod(0o644)  # a model is an output to share, unlike mkstemp's private default
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    # -- internals ----------------------------------------------------------------------------

    def _train_step_eager(self, x: Any, y: Any) -> tuple[Any, Any]:
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            probs = self.model(x, training=True)
            loss_sum = self._loss(y, probs)
            mean_loss = loss_sum / tf.cast(tf.shape(y)[0], loss_sum.dtype)
        grads = tape.gradient(mean_loss, variables)
        self.optimizer.apply_gradients(zip(grads, variables, strict=True))
        return loss_sum, self._count_correct(y, probs)

    def _eval_step_eager(self, x: Any, y: Any) -> tuple[Any, Any]:
        probs = self.model(x, training=False)
        return self._loss(y, probs), self._count_correct(y, probs)

    @staticmethod
    def _count_correct(y: Any, probs: Any) -> Any:
        hits = tf.equal(tf.argmax(probs, axis=1, output_type=y.dtype), y)
        return tf.reduce_sum(tf.cast(hits, tf.int64))

    def _reseed_dropout(self, rng: np.random.Generator) -> None:
        for var in self._seed_vars:
            seed = rng.integers(0, 2**31 - 1, dtype=np.int64)
            var.assign(np.array([seed, 0], dtype=np.dtype(var.dtype)))

    def _reset_optimizer(self) -> None:
        """Zero the step count and moment estimates (keep the learning rate)."""
        for var in self.optimizer.variables:
            if "learning_rate" not in var.path:
                var.assign(tf.zeros(var.shape, dtype=var.dtype))


def _zeros_like_var(var: Any) -> np.ndarray:
    """A cheap stand-in with the variable's dtype and shape (for the name/shape/dtype check)."""
    return np.broadcast_to(np.zeros((), dtype=np.dtype(var.dtype)), tuple(var.shape))


def save_keras_model(
    weights: Mapping[str, np.ndarray],
    path: str | os.PathLike[str],
    *,
    builder: str = "digits_cnn",
    allow_custom: bool = False,
) -> Path:
    """Write ``weights`` into the builder's architecture as a ``.keras`` file (atomic)."""
    runner = KerasRunner.from_weights(weights, builder=builder, allow_custom=allow_custom)
    return runner.save(path)


def load_keras_weights(path: str | os.PathLike[str]) -> Weights:
    """The weights of a ``.keras`` file, named as a KerasRunner names them (safe mode load)."""
    try:
        model = keras.saving.load_model(Path(path), compile=False, safe_mode=True)
    except (OSError, ValueError) as exc:
        raise ProtocolError(f"cannot read Keras model {path}: {exc}") from exc
    names = _weight_names(model)
    return {name: np.asarray(v.numpy()) for name, v in zip(names, model.weights, strict=True)}
