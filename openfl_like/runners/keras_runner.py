"""Keras (TensorFlow backend) task runner: the only module of the project that imports TensorFlow.

It is imported lazily (``runners.registry`` loads it for the "keras" runner only), so importing
TensorFlow at the top here costs nothing to processes that never train a Keras model.

Models come from builder functions: the built-in "digits_cnn" and "digits_mlp", or, only when the
operator allows it (``allow_custom=True``), an installed object named "module:attr". A builder
takes no argument and returns an uncompiled ``keras.Model`` whose input is the flat 64-feature
vector. Or the plan's ``model`` names a ``.keras`` file (relative to the plan folder): the initial
model of every site, checked for Lambda layers and custom objects before Keras reads it
(``keras_settings.check_keras_file``) and loaded in safe mode. The runner compiles either with
the plan's optimizer, loss and metrics (``keras_settings.CompileSettings``).

Weights are named ``layer/variable`` (the Keras variable path without the model's own name), so
names do not depend on how many models a process has built; they keep each variable's dtype
(a float16 layer stays float16). Name your layers for the same reason.
"""

from __future__ import annotations

import contextlib
import glob
import importlib
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from openfl_like.core.errors import ConfigError, ProtocolError
from openfl_like.core.logging import get_logger
from openfl_like.runners.base import TaskOutcome, Weights
from openfl_like.runners.common import (
    ShardLike,
    check_labels,
    check_positive_int,
    checked_weights,
    require_shard,
    shard_sample_counts,
    train_seed,
)
from openfl_like.runners.keras_settings import (
    CompileSettings,
    canonical_metric,
    check_keras_file,
    is_model_file,
    resolve_model_file,
)

# TensorFlow's start-up noise stays out of the logs (a user's own settings win): C++ log lines
# off; no CUDA probing (and its cuInit error) on a machine without an NVIDIA device node.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
if not glob.glob("/dev/nvidia[0-9]*"):
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

# What TensorFlow's import writes to stderr before its logging is set up, whatever
# TF_CPP_MIN_LOG_LEVEL says: absl's banner, then I/W/E lines (oneDNN, "Could not find cuda
# drivers", the CPU feature guard and its continuation line).
_NATIVE_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)"
    r"|[IWE]\d{4} [\d:.]+\s+\d+ [\w.]+:\d+\] "
    r"|To enable the following instructions: )")


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """While TensorFlow is imported, file descriptor 2 goes to a temporary file; what it
    caught goes back to stderr afterwards, minus ``_NATIVE_NOISE`` (other threads' lines
    survive). Off when the user asked for TensorFlow's logs (TF_CPP_MIN_LOG_LEVEL=0)."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3") == "0":
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().decode(errors="replace").splitlines(True)
                    if not _NATIVE_NOISE.match(line)]
            if kept:
                with contextlib.suppress(OSError, ValueError):
                    sys.stderr.write("".join(kept))
                    sys.stderr.flush()


with _quiet_native_stderr():
    import keras
    import tensorflow as tf

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
    """``layer/variable`` per weight, in model order; a repeated path (nested models reusing
    layer names) gets ``#k`` on its k-th repeat, so names are unique and stable for a given
    architecture."""
    prefix = f"{model.name}/"
    names: list[str] = []
    seen: dict[str, int] = {}
    for var in model.weights:
        path = var.path[len(prefix) :] if var.path.startswith(prefix) else var.path
        count = seen.get(path, 0)
        seen[path] = count + 1
        names.append(path if count == 0 else f"{path}#{count}")
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


def load_model_file(path: Path, *, seed: int = 0) -> Any:
    """The model of a ``.keras`` file (uncompiled), refused before loading when its architecture
    holds a Lambda layer or a custom object (ConfigError naming the file and the layer)."""
    check_keras_file(path)
    keras.utils.set_random_seed(int(seed))
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"model: {path}: Keras cannot load it: {reason}") from None
    if not isinstance(model, keras.Model) or not model.weights:
        raise ConfigError(f"model: {path}: not a built Keras model with weights")
    return model


def _io_shapes(model: Any, source: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Per-sample input and output shapes; a model without fixed ones is refused."""
    try:
        shapes = (tuple(model.inputs[0].shape[1:]), tuple(model.outputs[0].shape[1:]))
    except (AttributeError, ValueError, IndexError, TypeError):
        raise ConfigError(f"model: {source}: has no defined input/output (start it with "
                          "keras.Input)") from None
    if any(d is None for shape in shapes for d in shape):
        raise ConfigError(f"model: {source}: input and output shapes must be fixed, got {shapes}")
    return shapes[0], shapes[1]


_LOSSES: dict[str, Callable[[], Any]] = {
    "sparse_categorical_crossentropy": lambda: keras.losses.SparseCategoricalCrossentropy(
        reduction="sum"
    ),
    "categorical_crossentropy": lambda: keras.losses.CategoricalCrossentropy(reduction="sum"),
    "binary_crossentropy": lambda: keras.losses.BinaryCrossentropy(reduction="sum"),
    "mean_squared_error": lambda: keras.losses.MeanSquaredError(reduction="sum"),
    "mean_absolute_error": lambda: keras.losses.MeanAbsoluteError(reduction="sum"),
    "mean_squared_logarithmic_error": lambda: keras.losses.MeanSquaredLogarithmicError(
        reduction="sum"
    ),
    "huber": lambda: keras.losses.Huber(reduction="sum"),
}
_METRIC_FNS: dict[str, Callable[[Any, Any], Any]] = {
    "sparse_categorical_accuracy": keras.metrics.sparse_categorical_accuracy,
    "categorical_accuracy": keras.metrics.categorical_accuracy,
    "binary_accuracy": keras.metrics.binary_accuracy,
    "mean_squared_error": keras.metrics.mean_squared_error,
    "mean_absolute_error": keras.metrics.mean_absolute_error,
    "mean_absolute_percentage_error": keras.metrics.mean_absolute_percentage_error,
}
_ACCURACY_FOR_LOSS = {
    "sparse_categorical_crossentropy": "sparse_categorical_accuracy",
    "categorical_crossentropy": "categorical_accuracy",
    "binary_crossentropy": "binary_accuracy",
}
_OPTIMIZERS: dict[str, Callable[..., Any]] = {
    "adam": keras.optimizers.Adam,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
}


def _metric_fn(name: str, loss: str) -> Callable[[Any, Any], Any]:
    """A per-sample metric function (``accuracy`` follows the loss, as Keras's compile does)."""
    canonical = canonical_metric(name)
    if canonical == "accuracy":
        canonical = _ACCURACY_FOR_LOSS[loss]
    return _METRIC_FNS[canonical]


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
        builder: str | None = None,
        model: str | None = None,
        plan_dir: str | os.PathLike[str] | None = None,
        allow_custom: bool = False,
        task: str | None = None,
        optimizer: str = "adam",
        learning_rate: float = 3e-3,
        loss: str | None = None,
        metrics: str | None = None,
    ) -> None:
        self.settings = CompileSettings.from_params(
            task=task, optimizer=optimizer, learning_rate=learning_rate, loss=loss, metrics=metrics
        )
        if builder is not None and model is not None:
            raise ConfigError("task_runner.params: set model or builder, not both")
        self.seed = int(seed)
        self.shard = shard
        self.builder = model or builder or "digits_cnn"
        if is_model_file(self.builder):
            path = resolve_model_file(self.builder, plan_dir)
            self.model = load_model_file(path, seed=self.seed)
        else:
            self.model = build_model(self.builder, seed=self.seed, allow_custom=allow_custom)
        self._names = _weight_names(self.model)
        self._vars = dict(zip(self._names, self.model.weights, strict=True))
        self._templates = {name: _zeros_like_var(var) for name, var in self._vars.items()}
        self._input_shape, self._output_shape = _io_shapes(self.model, self.builder)
        if shard is not None:
            self._check_data_fits(shard)
        self._seed_vars = [
            v for v in self.model.variables if v.path.endswith("seed_generator_state")
        ]
        self.optimizer = _OPTIMIZERS[self.settings.optimizer](
            learning_rate=self.settings.learning_rate
        )
        self.optimizer.build(self.model.trainable_variables)
        self._loss = _LOSSES[self.settings.loss]()
        self._metric_fns = [_metric_fn(m, self.settings.loss) for m in self.settings.metrics]
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
        checked_weights(self._templates, weights)
        for name, var in self._vars.items():
            var.assign(weights[name])

    def train(self, *, epochs: int, batch_size: int) -> TaskOutcome:
        epochs = check_positive_int("epochs", epochs)
        batch_size = check_positive_int("batch_size", batch_size)
        shard = require_shard(self.shard, "train")
        x, y = self._check_xy(shard.x_train, shard.y_train)
        rng = np.random.default_rng(train_seed(self.seed, self.get_weights()))
        self._reseed_dropout(rng)
        self._reset_optimizer()
        n = x.shape[0]
        sums = np.zeros(1 + len(self._metric_fns))
        for _ in range(epochs):
            order = rng.permutation(n)
            sums[:] = 0.0  # Keras-style: report the last epoch's running mean
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                batch = self._train_step(tf.constant(x[idx]), tf.constant(y[idx]))
                sums += [float(v) for v in batch]
        return TaskOutcome(
            metrics=self._metrics(sums, n), data_size=n, extra={"epochs": float(epochs)}
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
        """Loss and the plan's metrics of the current weights on (x, y), e.g. the test set."""
        batch_size = check_positive_int("batch_size", batch_size)
        x, y = self._check_xy(x, y)
        sums = np.zeros(1 + len(self._metric_fns))
        for start in range(0, x.shape[0], batch_size):
            batch = self._eval_step(
                tf.constant(x[start : start + batch_size]),
                tf.constant(y[start : start + batch_size]),
            )
            sums += [float(v) for v in batch]
        n = x.shape[0]
        return TaskOutcome(metrics=self._metrics(sums, n), data_size=n)

    def predict(self, x: np.ndarray, *, batch_size: int = _EVAL_BATCH) -> np.ndarray:
        """The model's outputs for ``x`` (class probabilities for the built-in models)."""
        x = self._check_x(x)
        parts = [
            np.asarray(self.model(tf.constant(x[i : i + batch_size]), training=False))
            for i in range(0, x.shape[0], batch_size)
        ]
        return np.concatenate(parts) if parts else np.empty((0, *self._output_shape), np.float32)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model with its current weights as a ``.keras`` file, atomically; compiled
        with the plan's optimizer, loss and metrics, so ``keras.models.load_model(path)``
        gives a model whose ``evaluate(x, y)`` and ``fit`` work as the plan trained it."""
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
            self._compile_for_export()
            self.model.save(tmp)
            with tmp.open("rb") as fh:
                os.fsync(fh.fileno())
            tmp.chmod(0o644)  # a model is an output to share, unlike mkstemp's private default
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    # -- internals ----------------------------------------------------------------------------

    def _compile_for_export(self) -> None:
        """Compile by names Keras can deserialise in safe mode; training here never uses the
        compiled state (it runs its own step with ``self.optimizer`` and ``self._loss``)."""
        s = self.settings
        optimizer = _OPTIMIZERS[s.optimizer](learning_rate=s.learning_rate)
        # Built (fresh moments): load_model builds the optimizer it restores and refuses a
        # saved one whose variables do not match (an unbuilt Adam has 2 of its 2n + 2).
        optimizer.build(self.model.trainable_variables)
        self.model.compile(optimizer=optimizer, loss=s.loss,
                           metrics=[canonical_metric(m) for m in s.metrics])

    def _check_data_fits(self, shard: ShardLike) -> None:
        """At start-up: the site's samples must fit the model's input (one clear error)."""
        for part in ("train", "valid"):
            x = np.asarray(getattr(shard, f"x_{part}"))
            sample = tuple(x.shape[1:])
            if sample != self._input_shape and int(np.prod(sample)) != int(
                np.prod(self._input_shape)
            ):
                raise ConfigError(
                    f"data: x_{part} samples of shape ({', '.join(map(str, sample))}) do not "
                    f"fit the input ({', '.join(map(str, self._input_shape))}) of the model "
                    f"{self.builder}"
                )

    def _check_x(self, x: np.ndarray) -> np.ndarray:
        """Features as float32 shaped like the model's input (flat rows are reshaped)."""
        x = np.asarray(x, dtype=np.float32)
        want = self._input_shape
        if x.ndim >= 1 and x.shape[1:] != want and x[0].size == int(np.prod(want)):
            x = x.reshape((x.shape[0], *want))
        if x.shape[1:] != want:
            raise ConfigError(f"features: expected shape (n, {', '.join(map(str, want))}), "
                              f"got {x.shape}")
        return x

    def _check_xy(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Features, and labels as int64 class indices (sparse loss) or float32 targets shaped
        like the model's output; ConfigError otherwise."""
        x = self._check_x(x)
        y = np.asarray(y)
        n = x.shape[0]
        if n == 0:
            raise ConfigError("cannot train or evaluate on an empty data set")
        if self.settings.sparse_labels:
            return x, check_labels(y, n)
        if y.ndim == 0 or y.shape[0] != n:
            raise ConfigError(f"labels: expected {n} targets, got {y.dtype} {y.shape}")
        y = check_labels(y, n, task="regression")  # numeric and finite (one-hot targets too)
        want = (n, *self._output_shape)
        if y.shape != want and y.size == int(np.prod(want)):
            y = y.reshape(want)
        if y.shape != want:
            raise ConfigError(f"labels: expected targets of shape {want}, got {y.shape}")
        return x, y.astype(np.float32, copy=False)

    def _metrics(self, sums: np.ndarray, n: int) -> dict[str, float]:
        values = [float(v) / n for v in sums]
        return {"loss": values[0], **dict(zip(self.settings.metrics, values[1:], strict=True))}

    def _train_step_eager(self, x: Any, y: Any) -> tuple[Any, ...]:
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            out = tf.cast(self.model(x, training=True), tf.float32)
            loss_sum = self._loss(y, out)
            mean_loss = loss_sum / tf.cast(tf.shape(y)[0], loss_sum.dtype)
        grads = tape.gradient(mean_loss, variables)
        self.optimizer.apply_gradients(zip(grads, variables, strict=True))
        return (loss_sum, *self._metric_sums(y, out))

    def _eval_step_eager(self, x: Any, y: Any) -> tuple[Any, ...]:
        out = tf.cast(self.model(x, training=False), tf.float32)
        return (self._loss(y, out), *self._metric_sums(y, out))

    def _metric_sums(self, y: Any, out: Any) -> list[Any]:
        """Per-sample metric values summed over the batch (float64: exact for 0/1 hits)."""
        return [tf.reduce_sum(tf.cast(fn(y, out), tf.float64)) for fn in self._metric_fns]

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
    weights: Mapping[str, np.ndarray], path: str | os.PathLike[str], **params: Any
) -> Path:
    """Write ``weights`` into the plan's architecture (builder or model file) as ``.keras``."""
    return KerasRunner.from_weights(weights, **params).save(path)


def load_keras_weights(path: str | os.PathLike[str]) -> Weights:
    """The weights of a ``.keras`` file, named as a KerasRunner names them (safe mode load)."""
    try:
        model = keras.saving.load_model(Path(path), compile=False, safe_mode=True)
    except (OSError, ValueError) as exc:
        raise ProtocolError(f"cannot read Keras model {path}: {exc}") from exc
    names = _weight_names(model)
    return {name: np.asarray(v.numpy()) for name, v in zip(names, model.weights, strict=True)}
