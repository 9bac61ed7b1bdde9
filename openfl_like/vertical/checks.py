"""Argument checks of the communicator's public calls: a bad value is a one-line
``ConfigError`` (or ``ProtocolError`` for a tensor the wire cannot carry) naming the argument."""

from __future__ import annotations

from typing import Any

import numpy as np

from openfl_like.core.errors import ConfigError
from openfl_like.protocol.codec import dtype_name


def positive(what: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{what} must be a positive number, not {value!r}")
    return float(value)


def non_negative_int(what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{what} must be a non-negative integer, not {value!r}")
    return value


def name(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"a tensor or reader name must be a non-empty string: {value!r}")
    return value


def timeout_s(timeout_ms: Any, default_s: float) -> float:
    return default_s if timeout_ms is None else positive("timeout_ms", timeout_ms) / 1000.0


def wire_array(array: Any) -> np.ndarray:
    """``array`` as numpy (a TensorFlow eager tensor too); ProtocolError for object, str..."""
    if hasattr(array, "numpy") and not isinstance(array, np.ndarray):
        array = array.numpy()
    array = np.asarray(array)
    dtype_name(array.dtype)
    return array
