"""The split Keras model of a vertical pair, one half per party.

* Follower: a *bottom* model over its own features -> an embedding (``embedding_dim``).
* Leader: its own bottom model over its features, concatenated with the follower's embedding,
  then a hidden layer and a softmax over the classes (the *top*).

One training step: the follower computes its embedding under a ``GradientTape`` and sends it;
the leader computes the loss on (its features, the received embedding) with the embedding
*watched*, applies the gradients of its own variables and sends back dL/d(embedding); the
follower finishes its backward pass with ``tape.gradient(e, vars, output_gradients=g)``.
Both steps are ``tf.function`` graphs (eager Keras costs ~10x more per step); the follower's
graph recomputes the embedding under its tape, which is exact for a bottom model without
randomness (no dropout).

Initial weights come from the seed; with TensorFlow's op determinism (set by the Keras runner
module that imports TensorFlow quietly) a run is reproducible on one machine, so a pair that
resumes from a checkpoint retraces the same steps.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from openfl_like.core.errors import DataError
from openfl_like.plan.vertical_config import SplitModelSettings
from openfl_like.runners.keras_runner import keras, tf  # the quiet import and TF settings

_MODEL, _OPT = "model", "optimizer"


def _optimizer(settings: SplitModelSettings) -> Any:
    if settings.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=settings.learning_rate, momentum=0.9)
    return keras.optimizers.Adam(learning_rate=settings.learning_rate)


def _init(settings: SplitModelSettings, layer: int) -> Any:
    """A kernel initializer seeded per layer, not from Keras's global seed: a process (or a
    test) that builds both halves at once still gets the same weights every time."""
    return keras.initializers.GlorotUniform(seed=settings.seed * 16 + layer)


class _Half:
    """What both halves share: a model, its optimizer, and their state as named arrays."""

    model: Any
    optimizer: Any

    def _init_optimizer(self, settings: SplitModelSettings) -> None:
        self.optimizer = _optimizer(settings)
        self.optimizer.build(self.model.trainable_variables)

    def state(self) -> dict[str, np.ndarray]:
        """Model weights and optimizer variables, named by position (the architecture is fixed
        by the plan, whose settings both parties checked to be equal)."""
        out = {f"{_MODEL}/{i:04d}": np.array(w) for i, w in enumerate(self.model.get_weights())}
        for i, var in enumerate(self.optimizer.variables):
            out[f"{_OPT}/{i:04d}"] = np.array(var.numpy())
        return out

    def restore(self, arrays: Mapping[str, np.ndarray], *, source: str) -> None:
        weights = [w for _, w in sorted((k, v) for k, v in arrays.items()
                                        if k.startswith(f"{_MODEL}/"))]
        opt = [w for _, w in sorted((k, v) for k, v in arrays.items()
                                    if k.startswith(f"{_OPT}/"))]
        current = self.model.get_weights()
        variables = list(self.optimizer.variables)
        if len(weights) != len(current) or len(opt) != len(variables) or any(
                a.shape != b.shape for a, b in zip(weights, current, strict=True)) or any(
                a.shape != tuple(v.shape) for a, v in zip(opt, variables, strict=True)):
            raise DataError(f"{source}: does not fit this plan's model (other layer sizes or "
                            "optimizer); start fresh (--fresh) or use the plan it was made with")
        self.model.set_weights(weights)
        for var, value in zip(variables, opt, strict=True):
            var.assign(value.astype(var.dtype))

    def save_keras(self, path: Path) -> None:
        """The trained half as a ``.keras`` file (only built-in layers: loads in safe mode),
        written aside and renamed."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.stem}.partial.keras")
        try:
            self.model.save(partial)
            os.replace(partial, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()


class FollowerHalf(_Half):
    """The follower's bottom model: features -> embedding."""

    def __init__(self, settings: SplitModelSettings, num_features: int) -> None:
        self.model = keras.Sequential([
            keras.Input((num_features,), name="follower_features"),
            keras.layers.Dense(settings.embedding_dim, activation="tanh", name="bottom",
                               kernel_initializer=_init(settings, 1)),
        ], name="follower_bottom")
        self._init_optimizer(settings)
        self._pending: tuple[np.ndarray, tuple[int, ...]] | None = None
        self._compile(num_features, settings.embedding_dim)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The embedding of a training batch (kept with its input for :meth:`backward`)."""
        embedding = self._embed(tf.convert_to_tensor(x, tf.float32))
        self._pending = (x, tuple(embedding.shape))
        return np.asarray(embedding.numpy(), dtype=np.float32)

    def backward(self, gradient: np.ndarray) -> None:
        """Apply dL/d(embedding) from the leader to this half's variables."""
        if self._pending is None:
            raise RuntimeError("backward() without a forward()")
        x, shape = self._pending
        self._pending = None
        if gradient.shape != shape:
            raise DataError(f"the leader's gradient has shape {gradient.shape}, the embedding "
                            f"{shape}")
        self._backward(tf.convert_to_tensor(x, tf.float32),
                       tf.convert_to_tensor(gradient, tf.float32))

    def _compile(self, num_features: int, dim: int) -> None:
        """Graph functions (an eager step costs ~10x more). The backward pass recomputes the
        forward under its tape: the bottom model is deterministic (no dropout), so this is
        the tape of the embedding that was sent."""
        model, optimizer = self.model, self.optimizer

        @tf.function(input_signature=[tf.TensorSpec((None, num_features), tf.float32)])
        def embed(x: Any) -> Any:
            return model(x, training=True)

        @tf.function(input_signature=[tf.TensorSpec((None, num_features), tf.float32),
                                      tf.TensorSpec((None, dim), tf.float32)])
        def backward(x: Any, gradient: Any) -> None:
            with tf.GradientTape() as tape:
                embedding = model(x, training=True)
            variables = model.trainable_variables
            grads = tape.gradient(embedding, variables, output_gradients=gradient)
            optimizer.apply_gradients(zip(grads, variables, strict=True))

        self._embed, self._backward = embed, backward

    def embed(self, x: np.ndarray) -> np.ndarray:
        """Inference: the embedding of an evaluation batch."""
        return np.asarray(self.model(tf.convert_to_tensor(x), training=False).numpy(),
                          dtype=np.float32)


class LeaderHalf(_Half):
    """The leader's bottom model, the concatenation and the top model."""

    def __init__(self, settings: SplitModelSettings, num_features: int) -> None:
        own = keras.Input((num_features,), name="leader_features")
        received = keras.Input((settings.embedding_dim,), name="follower_embedding")
        bottom = keras.layers.Dense(settings.embedding_dim, activation="tanh", name="bottom",
                                    kernel_initializer=_init(settings, 2))(own)
        joined = keras.layers.Concatenate(name="concat")([bottom, received])
        hidden = keras.layers.Dense(settings.hidden_units, activation="relu", name="hidden",
                                    kernel_initializer=_init(settings, 3))(joined)
        output = keras.layers.Dense(settings.num_classes, activation="softmax", name="output",
                                    kernel_initializer=_init(settings, 4))(hidden)
        self.model = keras.Model([own, received], output, name="leader_top")
        self.embedding_dim = settings.embedding_dim
        self._loss = keras.losses.SparseCategoricalCrossentropy()
        self._init_optimizer(settings)
        self._compile(num_features, settings.embedding_dim)

    def _check(self, x: np.ndarray, embedding: np.ndarray) -> None:
        if embedding.ndim != 2 or embedding.shape != (x.shape[0], self.embedding_dim):
            raise DataError(f"the follower's embedding has shape {embedding.shape}, expected "
                            f"({x.shape[0]}, {self.embedding_dim}): do both parties run the "
                            "same plan and batch?")

    def train_step(self, x: np.ndarray, y: np.ndarray, embedding: np.ndarray
                   ) -> tuple[float, int, np.ndarray]:
        """One step: (batch loss, correct predictions, dL/d(embedding) for the follower)."""
        self._check(x, embedding)
        loss, probs, grad_embedding = self._step(
            tf.convert_to_tensor(x, tf.float32), tf.convert_to_tensor(y, tf.int64),
            tf.convert_to_tensor(embedding, tf.float32))
        correct = int(np.sum(np.argmax(probs.numpy(), axis=1) == y))
        return float(loss.numpy()), correct, np.asarray(grad_embedding.numpy(), np.float32)

    def _compile(self, num_features: int, dim: int) -> None:
        model, optimizer, loss_fn = self.model, self.optimizer, self._loss

        @tf.function(input_signature=[tf.TensorSpec((None, num_features), tf.float32),
                                      tf.TensorSpec((None,), tf.int64),
                                      tf.TensorSpec((None, dim), tf.float32)])
        def step(x: Any, y: Any, received: Any) -> tuple[Any, Any, Any]:
            with tf.GradientTape() as tape:
                tape.watch(received)  # dL/d(embedding) is what the follower needs
                probs = model([x, received], training=True)
                loss = loss_fn(y, probs)
            variables = model.trainable_variables
            *grads, grad_embedding = tape.gradient(loss, [*variables, received])
            optimizer.apply_gradients(zip(grads, variables, strict=True))
            return loss, probs, grad_embedding

        self._step = step

    def predict(self, x: np.ndarray, embedding: np.ndarray) -> np.ndarray:
        """Class indices for an evaluation batch."""
        self._check(x, embedding)
        probs = self.model([tf.convert_to_tensor(x), tf.convert_to_tensor(embedding)],
                           training=False)
        return np.argmax(probs.numpy(), axis=1)
