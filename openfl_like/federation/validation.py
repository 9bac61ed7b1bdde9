"""Checks on every update before it may touch the model: names, dtypes, shapes, finite values.

A failed check raises ``ProtocolError`` with a reason the collaborator can act on; the aggregator
then drops the staged bytes, so a bad update never reaches the aggregation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from openfl_like.core.errors import ProtocolError

# Finite-value checks look at this many elements at a time, so a huge tensor does not need a
# full-size boolean temporary.
_CHECK_BLOCK = 1 << 20


@dataclass(frozen=True)
class TensorSpec:
    dtype: np.dtype[Any]
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ModelSpec:
    """What every update must look like: exactly the global model's names, dtypes and shapes."""

    tensors: Mapping[str, TensorSpec]

    @classmethod
    def of(cls, weights: Mapping[str, np.ndarray]) -> ModelSpec:
        if not weights:
            raise ProtocolError("the model has no tensors")
        return cls(MappingProxyType({
            name: TensorSpec(np.asarray(a).dtype, tuple(np.asarray(a).shape))
            for name, a in sorted(weights.items())
        }))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.tensors)

    def check_tensor(self, name: str, array: np.ndarray, *, seen: Iterable[str] = ()) -> None:
        if not isinstance(array, np.ndarray):
            raise ProtocolError(f"tensor {name!r}: not an array")
        self.check_layout(name, array.dtype, tuple(array.shape), seen=seen)
        if not all_finite(array):
            raise ProtocolError(f"tensor {name!r}: contains NaN or infinite values")

    def check_layout(self, name: str, dtype: np.dtype[Any], shape: tuple[int, ...], *,
                     seen: Iterable[str] = ()) -> None:
        """Name, dtype and shape of one tensor, before any of its values is looked at."""
        spec = self.tensors.get(name)
        if spec is None:
            raise ProtocolError(f"tensor {name!r} is not part of the model")
        if name in seen:
            raise ProtocolError(f"tensor {name!r} sent twice")
        if dtype.newbyteorder("=") != spec.dtype.newbyteorder("="):
            raise ProtocolError(f"tensor {name!r}: dtype {dtype} (expected {spec.dtype})")
        if tuple(shape) != spec.shape:
            raise ProtocolError(f"tensor {name!r}: shape {tuple(shape)} (expected {spec.shape})")

    def check_complete(self, names: Iterable[str]) -> None:
        missing = sorted(set(self.tensors) - set(names))
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise ProtocolError(f"update is missing {len(missing)} tensor(s): {shown}")


def finite_pieces(name: str, dtype: np.dtype[Any],
                  pieces: Iterable[memoryview]) -> Iterator[memoryview]:
    """Pass ``pieces`` (raw bytes of whole elements) on, refusing NaN or infinite values in each.

    Checked piece by piece as an upload streams to disk, so no value is looked at twice and no
    full-size tensor is needed; a refusal comes before the offending piece is passed on.
    """
    for piece in pieces:
        if len(piece) % dtype.itemsize:
            raise ProtocolError(f"tensor {name!r}: a piece of {len(piece)} bytes splits an "
                                f"element of {dtype.itemsize} bytes")
        if not all_finite(np.frombuffer(piece, dtype=dtype)):
            raise ProtocolError(f"tensor {name!r}: contains NaN or infinite values")
        yield piece


def all_finite(array: np.ndarray) -> bool:
    if array.dtype.kind not in "fc":
        return True
    flat = array.reshape(-1)
    for start in range(0, flat.size, _CHECK_BLOCK):
        if not np.isfinite(flat[start:start + _CHECK_BLOCK]).all():
            return False
    return True


def check_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """Metrics must be named finite numbers (they end up in CSV, JSON and TensorBoard)."""
    clean: dict[str, float] = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or not name or len(name) > 128:
            raise ProtocolError(f"metric name {name!r} is invalid")
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            raise ProtocolError(f"metric {name!r}: not a number ({value!r})")
        if not math.isfinite(float(value)):
            raise ProtocolError(f"metric {name!r}: not finite ({value})")
        clean[name] = float(value)
    return clean


def check_data_size(data_size: int, *, needs_positive: bool) -> int:
    if isinstance(data_size, bool) or not isinstance(data_size, (int, np.integer)):
        raise ProtocolError(f"data_size must be an integer (got {data_size!r})")
    if data_size < 0 or (needs_positive and data_size == 0):
        raise ProtocolError(
            f"data_size must be {'> 0' if needs_positive else '>= 0'} (got {data_size})"
        )
    return int(data_size)
