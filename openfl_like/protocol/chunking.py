"""Split tensors into byte chunks for streaming, and join them back one tensor at a time.

A tensor stream is a sequence of :class:`Chunk`: the first chunk of each tensor carries its
``TensorMeta`` (name, dtype, shape, nbytes), the following ones only bytes, until ``nbytes`` bytes
have arrived. Zero-byte tensors are a single chunk with meta and no data.

Memory: the sender slices views of the array (no copy here); the receiver preallocates one
uninitialised buffer of ``nbytes`` per tensor (``np.empty``: unlike ``bytearray(n)`` it does not
zero-fill, which would be one more pass over the model), copies each chunk into place once and
wraps it with ``np.frombuffer``. So a receiver holds at most one incomplete tensor plus one chunk.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from openfl_like.core.errors import ProtocolError, ResourceLimitError
from openfl_like.core.messages import NamedTensor
from openfl_like.protocol import base_pb2
from openfl_like.protocol.codec import TensorLayout

MIB = 1024 * 1024
DEFAULT_CHUNK_SIZE = 4 * MIB
_EMPTY = np.empty(0, dtype=np.uint8)


@dataclass(frozen=True)
class Chunk:
    """One piece of a tensor stream; ``meta`` is set on the first piece of each tensor."""

    data: bytes | memoryview
    meta: base_pb2.TensorMeta | None = None


def meta_of(layout: TensorLayout) -> base_pb2.TensorMeta:
    return base_pb2.TensorMeta(
        name=layout.name,
        round_number=layout.round_number,
        tags=layout.tags,
        dtype=layout.dtype_name,
        shape=layout.shape,
        nbytes=layout.nbytes,
    )


def layout_of(meta: base_pb2.TensorMeta, *, max_tensor_bytes: int = 0) -> TensorLayout:
    return TensorLayout.parse(
        name=meta.name,
        round_number=meta.round_number,
        tags=meta.tags,
        dtype=meta.dtype,
        shape=meta.shape,
        nbytes=meta.nbytes,
        max_tensor_bytes=max_tensor_bytes,
    )


def split_bytes(view: memoryview, chunk_size: int) -> Iterator[memoryview]:
    """Consecutive slices of at most ``chunk_size`` bytes (views, no copies)."""
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be > 0, got {chunk_size}")
    for start in range(0, len(view), chunk_size):
        yield view[start : start + chunk_size]


def split_tensors(tensors: Iterable[NamedTensor], chunk_size: int) -> Iterator[Chunk]:
    """The chunk stream of ``tensors``; each tensor is encoded only when the stream reaches it."""
    for tensor in tensors:
        layout, view = TensorLayout.of(tensor)
        meta = meta_of(layout)
        if layout.nbytes == 0:
            yield Chunk(b"", meta)
            continue
        for index, piece in enumerate(split_bytes(view, chunk_size)):
            yield Chunk(piece, meta if index == 0 else None)


class TensorJoiner:
    """Reassembles tensors from chunks, checking layout and limits before accepting bytes."""

    def __init__(self, *, max_tensor_bytes: int = 0, max_total_bytes: int = 0) -> None:
        self._max_tensor_bytes = max_tensor_bytes
        self._max_total_bytes = max_total_bytes
        self._layout: TensorLayout | None = None
        self._buffer = _EMPTY
        self._filled = 0
        self.total_bytes = 0
        self.tensor_count = 0

    @property
    def pending(self) -> str | None:
        """Name of the tensor still waiting for bytes, if any."""
        return self._layout.name if self._layout is not None else None

    def feed(self, chunk: Chunk) -> NamedTensor | None:
        """Take one chunk; return the tensor it completes, if it completes one."""
        if chunk.meta is not None:
            self._open(chunk.meta)
        elif self._layout is None:
            raise ProtocolError("tensor bytes arrived before the tensor's metadata")
        layout = self._layout
        assert layout is not None
        size = len(chunk.data)
        if size:
            end = self._filled + size
            if end > layout.nbytes:
                raise ProtocolError(
                    f"tensor {layout.name!r}: more bytes than {layout.dtype_name} x "
                    f"{layout.shape} holds ({layout.nbytes} bytes)"
                )
            self._buffer[self._filled : end] = np.frombuffer(chunk.data, dtype=np.uint8)
            self._filled = end
        if self._filled < layout.nbytes:
            return None
        buffer, self._buffer, self._layout = self._buffer, _EMPTY, None
        self.tensor_count += 1
        return layout.to_tensor(buffer)

    def finish(self) -> None:
        """Call at the end of the stream: a half-received tensor means it was truncated."""
        if self._layout is not None:
            raise ProtocolError(
                f"stream truncated: tensor {self._layout.name!r} got {self._filled} of "
                f"{self._layout.nbytes} bytes"
            )

    def _open(self, meta: base_pb2.TensorMeta) -> None:
        if self._layout is not None:
            raise ProtocolError(
                f"stream truncated: tensor {self._layout.name!r} got {self._filled} of "
                f"{self._layout.nbytes} bytes before the next tensor began"
            )
        layout = layout_of(meta, max_tensor_bytes=self._max_tensor_bytes)
        total = self.total_bytes + layout.nbytes
        if self._max_total_bytes and total > self._max_total_bytes:
            raise ResourceLimitError(
                f"stream exceeds the limit of {self._max_total_bytes} bytes at tensor "
                f"{layout.name!r}"
            )
        self.total_bytes = total
        self._layout = layout
        self._buffer = np.empty(layout.nbytes, dtype=np.uint8)
        self._filled = 0


def join_tensors(
    chunks: Iterable[Chunk], *, max_tensor_bytes: int = 0, max_total_bytes: int = 0
) -> Iterator[NamedTensor]:
    """Yield each tensor as soon as its last chunk arrives; ProtocolError on a truncated stream."""
    joiner = TensorJoiner(max_tensor_bytes=max_tensor_bytes, max_total_bytes=max_total_bytes)
    for chunk in chunks:
        tensor = joiner.feed(chunk)
        if tensor is not None:
            yield tensor
    joiner.finish()
