"""Explicit name lists for everything a plan may choose, and the one gated door to custom objects.

The plan layer must not import runners, transport or federation (layers point downward), so the
names are kept here as plain data; the packages that implement them check they stay in sync in
their own tests. A plan never makes the process import anything, except through
``import_custom_object`` when both the plan (``task_runner.allow_custom_objects: true``) and the
operator (``allow_custom=True``) agree.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from openfl_like.core.errors import PlanError

# Task runners known by name (openfl_like.runners.registry implements them).
KNOWN_RUNNERS: tuple[str, ...] = ("numpy", "keras", "noop")
# What each built-in runner takes from ``task_runner.params``, with the runner's own default
# (None: no default value; the runner decides, e.g. the Keras "builder" falls back to digits_cnn).
# runners.registry.runner_params reads the same names from the classes' signatures, which for
# "keras" imports TensorFlow; here they are plain data, so validating a plan never loads it.
# tests/unit/runners/test_runner_param_names.py keeps the two in step (names and defaults).
RUNNER_PARAMS: dict[str, dict[str, str | int | float | bool | None]] = {
    "numpy": {"model": "softmax", "hidden_units": 64, "optimizer": "sgd", "learning_rate": 0.1,
              "momentum": 0.9, "input_dim": 64, "num_classes": 10},
    "noop": {"size_mib": 1.0, "num_tensors": 4, "delta": 0.0, "data_size": None},
    "keras": {"builder": None, "model": None, "task": None, "optimizer": "adam",
              "learning_rate": 3e-3, "loss": None, "metrics": None},
}
# Runner keywords the application sets (from the plan folder and the operator's consent); a plan
# cannot set them.
RUNNER_APP_PARAMS: dict[str, tuple[str, ...]] = {"keras": ("plan_dir", "allow_custom")}
# Data loaders known by name (openfl_like.data implements them).
KNOWN_DATA_LOADERS: tuple[str, ...] = ("digits",)
KNOWN_SPLITS: tuple[str, ...] = ("iid", "dirichlet")
# Aggregation algorithms implemented in openfl_like.federation.aggregation.
KNOWN_AGGREGATIONS: tuple[str, ...] = ("fedavg", "fedopt", "median", "trimmed_mean")
KNOWN_SERVER_OPTIMIZERS: tuple[str, ...] = ("adam", "yogi")
# Assigners implemented in openfl_like.federation.assigner.
KNOWN_ASSIGNERS: tuple[str, ...] = ("all_tasks",)
KNOWN_MODES: tuple[str, ...] = ("sync", "async")
# Staleness weights s(t) for asynchronous (FedBuff) mode, t = model versions behind.
KNOWN_STALENESS: tuple[str, ...] = ("constant", "polynomial", "hinge")

# Keys of the plan's `network` section, with the type each must have. The transport owns the
# defaults (and environment overrides); the plan only passes these through.
NETWORK_KEYS: dict[str, type] = {
    "chunk_size_bytes": int,
    "max_message_bytes": int,
    "max_model_bytes": int,
    "keepalive_seconds": float,
    "keepalive_timeout_seconds": float,
    "rpc_timeout_seconds": float,
    "long_poll_seconds": float,
    "retry_initial_seconds": float,
    "retry_max_seconds": float,
    "retry_total_seconds": float,
    "tls": bool,
    "client_role": str,
    "metrics_port": int,  # /metrics, /healthz, /readyz over HTTP (0: off); transport.settings
    "metrics_host": str,
}
# allowed values of the string keys (client_role mirrors transport.settings.CLIENT_ROLES)
NETWORK_CHOICES: dict[str, tuple[str, ...]] = {"client_role": ("collaborator", "envoy")}
NETWORK_DEFAULTS: dict[str, bool] = {"tls": True}

_OBJECT_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def is_object_reference(value: object) -> bool:
    """True for strings shaped like ``package.module:attr`` (a custom object, not a name)."""
    return isinstance(value, str) and bool(_OBJECT_REF.fullmatch(value))


def import_custom_object(ref: str, *, plan_allows: bool, allow_custom: bool) -> Any:
    """Import ``module:attr`` only when the plan and the operator both allow custom objects."""
    if not is_object_reference(ref):
        raise PlanError(f"{ref!r} is not a 'module:attr' reference")
    if not plan_allows:
        raise PlanError(
            f"plan.yaml: task_runner.allow_custom_objects: must be true to use {ref!r}"
        )
    if not allow_custom:
        raise PlanError(
            f"{ref!r}: custom objects are disabled; the operator must allow them explicitly"
        )
    module_name, _, attr_path = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr_path.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise PlanError(f"{ref!r}: cannot be imported ({exc})") from None
    return obj
