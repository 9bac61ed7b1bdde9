"""Tensor files held in memory: the same layout and checks as ``tensorfile``, no disk.

Why: a small update (a few KiB to ``INLINE_MAX_BYTES``) costs more to stage as a file than to
receive: a create, an fdatasync and a directory fsync per upload. Its bytes go into the journal
line that applies it instead (one group-committed fsync), and aggregation reads them from
memory through the same block interface as a staged file.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from pathlib import Path
from typing import cast

import numpy as np

from openfl_like.core.errors import FederationError
from openfl_like.federation.tensorfile import TensorEntry, TensorFileReader, TensorFileWriter

# Updates of models up to this size travel inside their journal line (base64: 4/3 of it).
INLINE_MAX_BYTES = 64 << 10


class MemoryTensorWriter(TensorFileWriter):
    """A ``TensorFileWriter`` into a byte buffer; ``label`` names it in error messages."""

    def __init__(self, label: str) -> None:
        self.path = Path(label)
        self._handle = cast(io.RawIOBase, io.BytesIO())  # open until commit/abort
        self._sync = None
        self._entries: dict[str, TensorEntry] = {}
        self._offset = 0
        self._unsynced = 0
        self._buffer = bytearray()

    def _write_bytes(self, data: memoryview) -> None:
        self._buffer += data

    def commit(self, *, manifest_file: bool = False) -> dict[str, TensorEntry]:
        if self._handle is None:
            raise FederationError(f"{self.path}: already committed")
        self._handle = None
        return dict(self._entries)

    def abort(self) -> None:
        self._handle = None
        self._buffer = bytearray()

    @property
    def data(self) -> bytes:
        return bytes(self._buffer)


class MemoryTensorReader(TensorFileReader):
    """Block reads of tensors held in ``data`` (with the CRC checks of a file reader)."""

    def __init__(self, data: bytes, entries: Mapping[str, TensorEntry], *, label: str,
                 verify: bool = True) -> None:
        self.path = Path(label)
        self.verify = verify
        self._progress: dict[str, tuple[int, int]] = {}
        self.entries = dict(entries)
        self._data = memoryview(data)

    def read_into(self, name: str, start: int, out: np.ndarray) -> np.ndarray:
        entry = self.entries[name]
        begin = entry.offset + start * entry.dtype.itemsize
        view = memoryview(out).cast("B")
        piece = self._data[begin:begin + len(view)]
        if len(piece) != len(view):
            raise FederationError(f"{self.path}: tensor {name!r} is truncated")
        view[:] = piece
        if self.verify and entry.crc32 is not None:
            self._check(entry, start, len(out), view)
        return out

    def close(self) -> None:
        self._data.release()


def encode_inline(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode_inline(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)
