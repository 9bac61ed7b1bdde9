"""ndarray <-> raw little-endian bytes + dtype name + shape. Never pickle, never cast.

Encoding keeps the exact dtype: float16/32/64, complex64/128, int8..int64, uint8..uint64, bool and
bfloat16. Big-endian input is byte-swapped to little-endian (same values, so not a cast);
non-contiguous input is made contiguous once. Decoding wraps the received buffer with
``np.frombuffer`` (no copy) after checking that its length is exactly itemsize x prod(shape).

bfloat16 is sent under the dtype name ``"bfloat16"`` as its raw 2-byte patterns. On receipt it
becomes an ``ml_dtypes.bfloat16`` array when ml_dtypes is installed (it ships with TensorFlow/JAX),
otherwise an ``np.dtype("V2")`` array holding the same bytes (view it as ``uint16`` to get the bit
patterns). A ``V2`` array is sent as ``"bfloat16"`` again, so a peer without ml_dtypes relays
bfloat16 unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from openfl_like.core.errors import ProtocolError, ResourceLimitError
from openfl_like.core.messages import NamedTensor

try:  # optional: gives bfloat16 its arithmetic; without it bfloat16 travels as raw V2 bytes
    import ml_dtypes as _ml_dtypes

    _BFLOAT16: np.dtype = np.dtype(_ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - depends on the environment
    _BFLOAT16 = np.dtype("V2")

_RAW_BFLOAT16 = np.dtype("V2")

_PLAIN_DTYPES: tuple[str, ...] = (
    "bool",
    "int8", "int16", "int32", "int64",
    "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64",
    "complex64", "complex128",
)  # fmt: skip

# dtype name on the wire -> little-endian numpy dtype
_BY_NAME: dict[str, np.dtype] = {name: np.dtype(name).newbyteorder("<") for name in _PLAIN_DTYPES}
_BY_NAME["bool"] = np.dtype("bool")
_BY_NAME["bfloat16"] = _BFLOAT16

SUPPORTED_DTYPES: tuple[str, ...] = (*_PLAIN_DTYPES, "bfloat16")
_NAMES: dict[np.dtype, str] = {}  # dtype_name's answers (a few dtypes: the ones we carry)


def dtype_name(dtype: np.dtype) -> str:
    """The wire name of ``dtype``; ProtocolError for anything we do not carry (object, str...)."""
    name = _NAMES.get(dtype)  # numpy's dtype.name costs ~5 us: every send asks
    if name is None:
        name = _NAMES[dtype] = _dtype_name(dtype)  # (refusals raise: never remembered)
    return name


def _dtype_name(dtype: np.dtype) -> str:
    if dtype in (_RAW_BFLOAT16, _BFLOAT16) or dtype.name == "bfloat16":
        return "bfloat16"
    name = dtype.name
    if name not in _BY_NAME:
        raise ProtocolError(
            f"dtype {dtype} cannot be sent: supported are {', '.join(SUPPORTED_DTYPES)}"
        )
    return name


def dtype_from_name(name: str) -> np.dtype:
    """The little-endian numpy dtype for a wire name; ProtocolError when unknown."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ProtocolError(f"unknown dtype {name!r}") from None


def as_wire_array(array: np.ndarray) -> np.ndarray:
    """``array`` as a C-contiguous little-endian array; no copy when it already is one."""
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    if not array.flags.c_contiguous:  # (np.ascontiguousarray would turn 0-d into 1-d)
        array = array.copy(order="C")
    return array


def raw_bytes(array: np.ndarray) -> memoryview:
    """A flat byte view of a wire array (see :func:`as_wire_array`); shares its memory."""
    return memoryview(array.reshape(-1).view(np.uint8))


@dataclass(frozen=True)
class TensorLayout:
    """What the receiver needs to rebuild one tensor, checked before any byte is accepted."""

    name: str
    round_number: int
    tags: tuple[str, ...]
    dtype: np.dtype
    shape: tuple[int, ...]
    nbytes: int

    @classmethod
    def of(cls, tensor: NamedTensor) -> tuple[TensorLayout, memoryview]:
        """Layout and raw bytes of an outgoing tensor."""
        array = as_wire_array(np.asarray(tensor.array))
        name = dtype_name(array.dtype)
        layout = cls(
            name=tensor.name,
            round_number=int(tensor.round_number),
            tags=tuple(tensor.tags),
            dtype=_BY_NAME[name],
            shape=tuple(int(d) for d in array.shape),
            nbytes=int(array.nbytes),
        )
        return layout, raw_bytes(array)

    @classmethod
    def parse(
        cls,
        *,
        name: str,
        round_number: int,
        tags: Sequence[str],
        dtype: str,
        shape: Sequence[int],
        nbytes: int,
        max_tensor_bytes: int = 0,
    ) -> TensorLayout:
        """Validate incoming metadata; ProtocolError/ResourceLimitError say what is wrong."""
        if not name:
            raise ProtocolError("tensor without a name")
        np_dtype = dtype_from_name(dtype)
        dims = tuple(int(d) for d in shape)
        if any(d < 0 for d in dims):
            raise ProtocolError(f"tensor {name!r}: negative dimension in shape {dims}")
        expected = np_dtype.itemsize * math.prod(dims)
        if nbytes != expected:
            raise ProtocolError(
                f"tensor {name!r}: {nbytes} bytes do not match {dtype} x {dims} "
                f"({expected} bytes expected)"
            )
        if max_tensor_bytes and nbytes > max_tensor_bytes:
            raise ResourceLimitError(
                f"tensor {name!r} has {nbytes} bytes, over the limit of {max_tensor_bytes}"
            )
        return cls(name, int(round_number), tuple(tags), np_dtype, dims, nbytes)

    @property
    def dtype_name(self) -> str:
        return dtype_name(self.dtype)

    def to_tensor(self, buffer: bytes | bytearray | memoryview | np.ndarray) -> NamedTensor:
        """Wrap ``buffer`` (exactly ``nbytes`` long) as the tensor, without copying it."""
        if len(buffer) != self.nbytes:
            raise ProtocolError(
                f"tensor {self.name!r}: got {len(buffer)} bytes, expected {self.nbytes}"
            )
        if self.nbytes == 0:
            array = np.empty(self.shape, dtype=self.dtype)
        else:
            array = np.frombuffer(buffer, dtype=self.dtype).reshape(self.shape)
        return NamedTensor(self.name, array, self.round_number, self.tags)


def encode_array(array: np.ndarray) -> tuple[str, tuple[int, ...], bytes]:
    """Small-tensor convenience: (dtype name, shape, bytes). Streams use TensorLayout.of."""
    wire = as_wire_array(np.asarray(array))
    return dtype_name(wire.dtype), tuple(wire.shape), wire.tobytes()


def decode_array(dtype: str, shape: Sequence[int], data: bytes | bytearray) -> np.ndarray:
    """Inverse of :func:`encode_array`; ProtocolError when the bytes do not fit dtype x shape."""
    layout = TensorLayout.parse(
        name="array", round_number=0, tags=(), dtype=dtype, shape=shape, nbytes=len(data)
    )
    return layout.to_tensor(data).array
