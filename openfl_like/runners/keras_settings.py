"""What a Keras plan may say about its model, checked without importing TensorFlow.

Two things live here so that ``keras_runner`` (the only TensorFlow module) stays about training:

* :class:`CompileSettings`: optimizer, learning rate, loss and metrics from the runner params,
  with the defaults of the task (classification: sparse categorical cross-entropy and accuracy;
  regression: mean squared error and no metric). Names only; keras_runner maps them to objects.
* :func:`check_keras_file`: reads the architecture (``config.json``) inside a ``.keras`` zip and
  refuses a ``Lambda`` layer or any object Keras itself does not define, naming the layer. Keras's
  safe mode would refuse a Lambda too, but with a generic message and only while deserialising;
  reading the JSON first never runs a line of the file's code.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from openfl_like.core.errors import ConfigError

MODEL_SUFFIX = ".keras"
TASKS = ("classification", "regression")
OPTIMIZERS = ("adam", "sgd", "rmsprop")
LOSS_ALIASES = {
    "mse": "mean_squared_error",
    "mae": "mean_absolute_error",
    "msle": "mean_squared_logarithmic_error",
}
CLASSIFICATION_LOSSES = (
    "sparse_categorical_crossentropy",
    "categorical_crossentropy",
    "binary_crossentropy",
)
REGRESSION_LOSSES = (
    "mean_squared_error",
    "mean_absolute_error",
    "mean_squared_logarithmic_error",
    "huber",
)
# Per-sample metrics only: the runner sums them over batches and divides by the sample count,
# which is exact for these and meaningless for stateful ones (AUC, RMSE).
METRIC_ALIASES = {"acc": "accuracy", "mse": "mean_squared_error", "mae": "mean_absolute_error",
                  "mape": "mean_absolute_percentage_error"}
METRICS = (
    "accuracy",
    "mean_squared_error",
    "mean_absolute_error",
    "mean_absolute_percentage_error",
    "sparse_categorical_accuracy",
    "categorical_accuracy",
    "binary_accuracy",
)


@dataclass(frozen=True)
class CompileSettings:
    """How a KerasRunner trains: one optimizer, one loss, per-sample metrics (reported by the
    names the plan used, so ``aggregator.best_model.metric`` can name any of them)."""

    optimizer: str = "adam"
    learning_rate: float = 3e-3
    loss: str = "sparse_categorical_crossentropy"
    metrics: tuple[str, ...] = ("accuracy",)

    @property
    def sparse_labels(self) -> bool:
        """Labels are class indices (int64), not targets shaped like the model's output."""
        return self.loss == "sparse_categorical_crossentropy"

    @classmethod
    def from_params(
        cls,
        *,
        task: str | None = None,
        optimizer: str = "adam",
        learning_rate: float = 3e-3,
        loss: str | None = None,
        metrics: str | Sequence[str] | None = None,
    ) -> CompileSettings:
        """Validate the plan's names; a regression ``loss`` alone implies ``task: regression``."""
        if optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer: unknown {optimizer!r}; known: {', '.join(OPTIMIZERS)}")
        if isinstance(learning_rate, bool) or not (
            isinstance(learning_rate, int | float)
            and np.isfinite(learning_rate)
            and learning_rate > 0
        ):
            raise ConfigError(f"learning_rate: must be > 0, got {learning_rate!r}")
        if task is not None and task not in TASKS:
            raise ConfigError(f"task: must be one of {', '.join(TASKS)}, got {task!r}")
        loss_name = _loss_name(loss, task)
        if task is None:
            task = "regression" if loss_name in REGRESSION_LOSSES else "classification"
        names = _metric_names(metrics, task)
        if "accuracy" in names and loss_name not in CLASSIFICATION_LOSSES:
            raise ConfigError(f"metrics: accuracy needs a classification loss, not {loss_name}")
        return cls(optimizer=optimizer, learning_rate=float(learning_rate), loss=loss_name,
                   metrics=names)


def _loss_name(loss: str | None, task: str | None) -> str:
    if loss is None:
        return "mean_squared_error" if task == "regression" else "sparse_categorical_crossentropy"
    name = LOSS_ALIASES.get(loss, loss)
    if name not in CLASSIFICATION_LOSSES + REGRESSION_LOSSES:
        known = ", ".join(CLASSIFICATION_LOSSES + REGRESSION_LOSSES + tuple(LOSS_ALIASES))
        raise ConfigError(f"loss: unknown {loss!r}; known: {known}")
    return name


def _metric_names(metrics: str | Sequence[str] | None, task: str) -> tuple[str, ...]:
    """Plan params are scalars, so a list arrives as "accuracy,mae"; "" or "none" means none."""
    if metrics is None:
        return ("accuracy",) if task == "classification" else ()
    raw = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    names: list[str] = []
    for item in (m.strip() for m in raw):
        if item in ("", "none"):
            continue
        if METRIC_ALIASES.get(item, item) not in METRICS:
            known = ", ".join(METRICS + tuple(METRIC_ALIASES))
            raise ConfigError(f"metrics: unknown or not per-sample {item!r}; known: {known}")
        if item not in names:
            names.append(item)
    return tuple(names)


def canonical_metric(name: str) -> str:
    """The Keras function name behind a metric name of the plan ("mae" -> mean_absolute_error)."""
    return METRIC_ALIASES.get(name, name)


# -- model files --------------------------------------------------------------------------------


def is_model_file(model: str) -> bool:
    """A ``model`` param ending in .keras names a file; anything else names a built-in."""
    return model.endswith(MODEL_SUFFIX)


def resolve_model_file(model: str, plan_dir: str | Path | None) -> Path:
    """``model`` relative to the plan folder (or the working directory without one)."""
    path = Path(model).expanduser()
    if not path.is_absolute() and plan_dir is not None:
        path = Path(plan_dir) / path
    if not path.is_file():
        raise ConfigError(f"model: {path} is not a file")
    return path


def check_keras_file(path: Path) -> None:
    """ConfigError naming the file and the layer unless every object in its architecture is a
    Keras built-in other than Lambda (whose Python code safe mode would refuse to run)."""
    config = _read_config(path)
    for layer, obj in _objects(config, layer="model"):
        class_name = obj.get("class_name")
        module = obj.get("module")
        if class_name in ("Lambda", "__lambda__"):
            raise ConfigError(
                f"model: {path}: layer {layer!r} is a Lambda layer (arbitrary Python code); "
                "rebuild it from built-in layers"
            )
        if "module" in obj and not (
            isinstance(module, str) and (module == "keras" or module.startswith("keras."))
        ):
            raise ConfigError(
                f"model: {path}: layer {layer!r} needs the custom object {class_name!r} "
                f"(module {module!r}), which is not allowed; use built-in Keras layers"
            )


def _read_config(path: Path) -> Any:
    try:
        with zipfile.ZipFile(path) as archive:
            raw = archive.read("config.json")
        return json.loads(raw)
    except KeyError:
        raise ConfigError(f"model: {path}: not a Keras 3 .keras file (no config.json)") from None
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        raise ConfigError(f"model: {path}: not a readable .keras file ({exc})") from None


def _objects(node: Any, *, layer: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every serialised object (a dict with ``class_name``) with the nearest named layer."""
    if isinstance(node, dict):
        if "class_name" in node:
            config = node.get("config")
            if isinstance(config, dict) and isinstance(config.get("name"), str):
                layer = config["name"]
            yield layer, node
        for value in node.values():
            yield from _objects(value, layer=layer)
    elif isinstance(node, list):
        for item in node:
            yield from _objects(item, layer=layer)
