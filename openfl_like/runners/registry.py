"""Runner names a plan may use, mapped explicitly to their classes.

No dotted paths: a plan names "numpy", "keras" or "noop", and only those classes can be built.
Each class is imported on first use, so TensorFlow loads only in a process that asks for "keras".
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from openfl_like.core.errors import ConfigError
from openfl_like.runners.base import TaskRunner, Weights
from openfl_like.runners.common import ShardLike


def _numpy() -> type[Any]:
    from openfl_like.runners.numpy_runner import NumpyRunner

    return NumpyRunner


def _noop() -> type[Any]:
    from openfl_like.runners.numpy_runner import NoopRunner

    return NoopRunner


def _keras() -> type[Any]:
    from openfl_like.runners.keras_runner import KerasRunner

    return KerasRunner


_RUNNERS: dict[str, Callable[[], type[Any]]] = {"numpy": _numpy, "keras": _keras, "noop": _noop}


def known_runner_names() -> tuple[str, ...]:
    return tuple(sorted(_RUNNERS))


def runner_class(name: str) -> type[Any]:
    """The class behind ``name`` (imports it); ConfigError naming the known runners otherwise."""
    try:
        loader = _RUNNERS[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"task_runner: unknown runner {name!r}; known: {', '.join(known_runner_names())}"
        ) from None
    return loader()


def runner_params(name: str) -> tuple[str, ...]:
    """The keyword settings runner ``name`` accepts (besides ``seed``), for plan validation."""
    sig = inspect.signature(runner_class(name).__init__)
    return tuple(
        p.name for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY and p.name != "seed"
    )


def _check_params(name: str, params: Mapping[str, object]) -> None:
    allowed = runner_params(name)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(
            f"task_runner.params: {', '.join(unknown)} not understood by the {name!r} runner; "
            f"it accepts: {', '.join(allowed)}"
        )


def create_runner(
    name: str, shard: ShardLike | None, *, seed: int = 0, **params: Any
) -> TaskRunner:
    """A runner for one collaborator's shard (``shard=None``: model only, for evaluation)."""
    cls = runner_class(name)
    _check_params(name, params)
    runner: TaskRunner = cls(shard, seed=seed, **params)
    return runner


def initial_weights(name: str, *, seed: int = 0, **params: Any) -> Weights:
    """The model's starting weights for ``seed``: what the aggregator sends in round 0."""
    cls = runner_class(name)
    _check_params(name, params)
    weights: Weights = cls(None, seed=seed, **params).get_weights()
    return weights


def evaluate_weights(
    name: str,
    weights: Mapping[str, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int = 256,
    **params: Any,
) -> dict[str, float]:
    """Loss and metrics of ``weights`` on (x, y) without a shard (the aggregator's test set)."""
    cls = runner_class(name)
    _check_params(name, {k: v for k, v in params.items() if k != "seed"})
    runner = cls.from_weights(weights, **params)
    outcome = runner.evaluate_arrays(x, y, batch_size=batch_size)
    return {k: float(v) for k, v in outcome.metrics.items()}


def save_native_model(
    name: str, weights: Mapping[str, np.ndarray], path: str | os.PathLike[str], **params: Any
) -> Path | None:
    """Write ``weights`` in the runner's own model format (``.keras`` for Keras); None when the
    runner has no format beyond the .npz every federation writes."""
    cls = runner_class(name)
    if not hasattr(cls, "save"):
        return None
    saved: Path = cls.from_weights(weights, **params).save(path)
    return saved


def load_native_model(name: str, path: str | os.PathLike[str]) -> Any:
    """A model file in the runner's own format as the framework's object (a ``keras.Model``
    for Keras, checked and loaded in safe mode); None when the runner has no such format."""
    if name != "keras":
        return None
    from openfl_like.runners.keras_runner import load_model_file  # the lazy gate to TensorFlow

    return load_model_file(Path(path))
