"""Split tensors into byte chunks for streaming, and join them back one tensor at a time.

A tensor stream is a sequence of :class:`Chunk`: the first chunk of each tensor carries its
``TensorMeta`` (name, dtype, shape, nbytes), the following ones only bytes, until ``nbytes`` bytes
have arrived. Zero-byte tensors are a single chunk with meta and no data.

Memory: the sender slices views of the array (no copy here); the receiver preallocates one
uninitialised buffer of ``nbytes`` per tensor (``np.empty``: unlike ``bytearray(n)`` it does not
zero-fill, which would be one more pass over the model), copies each chunk into place once and
wraps it with ``np.frombuffer``. So a receiver holds at most one incomplete tensor plus one chunk.
A receiver that writes tensors to disk as they arrive uses :func:`stream_tensors` instead: it
yields each tensor as a ``TensorStream`` whose bytes are handed on chunk by chunk (views, no
copy), so it holds about one chunk whatever the tensor's size, with the same checks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from openfl_like.core.errors import ProtocolError, ResourceLimitError
from openfl_like.core.messages import NamedTensor, TensorStream
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


def pack_chunks(chunks: Iterable[Chunk], budget: int) -> Iterator[list[Chunk]]:
    """Consecutive chunks grouped into messages of at most ``budget`` data bytes (a chunk of
    ``budget`` bytes travels alone), so a model of many small tensors is a few messages, not
    one per tensor: each stream message costs both sides a trip through grpc."""
    group: list[Chunk] = []
    size = 0
    for chunk in chunks:
        if group and size + len(chunk.data) > budget:
            yield group
            group, size = [], 0
        group.append(chunk)
        size += len(chunk.data)
    if group:
        yield group


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


class _Source:
    """The chunk iterator shared by a stream's tensors, with one chunk of look-ahead."""

    def __init__(self, chunks: Iterable[Chunk]) -> None:
        self._chunks = iter(chunks)
        self._ahead: Chunk | None = None

    def next(self) -> Chunk | None:
        if self._ahead is not None:
            chunk, self._ahead = self._ahead, None
            return chunk
        return next(self._chunks, None)

    def push_back(self, chunk: Chunk) -> None:
        self._ahead = chunk


def _aligned_views(layout: TensorLayout, first: Chunk, source: _Source) -> Iterator[memoryview]:
    """The tensor's bytes as views of whole elements; ProtocolError if truncated or overlong.

    A chunk may end inside an element (any sender's chunk size is allowed): the partial element
    (fewer than ``itemsize`` bytes) is carried over and completed from the next chunk.
    """
    itemsize = layout.dtype.itemsize
    filled = 0
    carry = b""
    chunk: Chunk | None = first
    while True:
        assert chunk is not None
        data = memoryview(chunk.data).cast("B") if len(chunk.data) else memoryview(b"")
        if filled + len(data) > layout.nbytes:
            raise ProtocolError(
                f"tensor {layout.name!r}: more bytes than {layout.dtype_name} x "
                f"{layout.shape} holds ({layout.nbytes} bytes)"
            )
        filled += len(data)
        if carry:
            need = itemsize - len(carry)
            carry += bytes(data[:need])
            data = data[need:]
            if len(carry) == itemsize:
                yield memoryview(carry)
                carry = b""
        whole = len(data) - len(data) % itemsize
        if whole:
            yield data[:whole]
        if whole < len(data):
            carry += bytes(data[whole:])
        if filled == layout.nbytes:
            return
        chunk = source.next()
        if chunk is None or chunk.meta is not None:
            if chunk is not None:
                source.push_back(chunk)
            following = "at the end of the stream" if chunk is None else \
                "before the next tensor began"
            raise ProtocolError(
                f"stream truncated: tensor {layout.name!r} got {filled} of "
                f"{layout.nbytes} bytes {following}"
            )


def stream_tensors(
    chunks: Iterable[Chunk], *, max_tensor_bytes: int = 0, max_total_bytes: int = 0
) -> Iterator[TensorStream]:
    """Each tensor as a ``TensorStream`` as soon as its metadata arrives (no joining).

    The consumer reads each stream's ``chunks`` before asking for the next tensor; whatever it
    leaves unread is still checked and then skipped. Checks as in :class:`TensorJoiner`: layout
    and per-tensor limit on the metadata, the total limit before any byte is accepted, exact
    byte counts while the bytes flow.
    """
    source = _Source(chunks)
    total = 0
    while (chunk := source.next()) is not None:
        if chunk.meta is None:
            raise ProtocolError("tensor bytes arrived before the tensor's metadata")
        layout = layout_of(chunk.meta, max_tensor_bytes=max_tensor_bytes)
        total += layout.nbytes
        if max_total_bytes and total > max_total_bytes:
            raise ResourceLimitError(
                f"stream exceeds the limit of {max_total_bytes} bytes at tensor {layout.name!r}"
            )
        views = _aligned_views(layout, chunk, source)
        yield TensorStream(
            name=layout.name,
            dtype=layout.dtype,
            shape=layout.shape,
            nbytes=layout.nbytes,
            chunks=views,
            round_number=layout.round_number,
            tags=layout.tags,
        )
        for _ in views:  # whatever the consumer did not read: checked, then dropped
            pass
