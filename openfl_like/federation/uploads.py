"""Receiving an update: validate each tensor as it streams in and write it to a staging file.

Over gRPC each tensor arrives chunk by chunk (``TensorStream``: layout checked first, then the
values of every chunk), so an upload holds about one chunk in memory whatever its size. Any
refusal (bad layout, bytes or values, a broken stream, a full disk) removes the file before the
update could be journalled, so a refused update leaves nothing behind. The staged file's layout,
with a CRC-32 per tensor, goes into the journal line that applies it. Once a federation has
ended, ``clear_staging`` removes the folder (a stopped one keeps it: its journal may name files).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from openfl_like.core.errors import ProtocolError
from openfl_like.core.logging import get_logger
from openfl_like.core.messages import NamedTensor, ResultKey, TensorStream
from openfl_like.federation.state import StateStore, disk_error
from openfl_like.federation.tensorbuffer import INLINE_MAX_BYTES, MemoryTensorWriter
from openfl_like.federation.tensorfile import Layout, TensorEntry, TensorFileWriter, layout_of
from openfl_like.federation.validation import ModelSpec, finite_pieces

log = get_logger(__name__)


@dataclass(frozen=True)
class Staged:
    """Where a received update went: a staging file (``name``) or memory (``inline``)."""

    name: str | None
    layout: Layout
    inline: bytes | None = None


class Stager:
    """Writes updates of a model shaped like ``spec`` into ``store``'s staging folder, or,
    for a model of at most ``inline_max_bytes``, into memory (its journal line keeps it)."""

    def __init__(self, store: StateStore, spec: ModelSpec, *,
                 inline_max_bytes: int = INLINE_MAX_BYTES) -> None:
        self.store = store
        self.spec = spec
        self.inline = sum(t.dtype.itemsize * int(np.prod(t.shape, dtype=np.int64))
                          for t in spec.tensors.values()) <= inline_max_bytes

    def stage_tensors(self, key: ResultKey, tensors: Iterator[NamedTensor]) -> Staged:
        def write(writer: TensorFileWriter) -> None:
            for tensor in tensors:
                self.spec.check_tensor(tensor.name, tensor.array, seen=writer.entries)
                writer.write(tensor.name, tensor.array)
                # Let go of the received buffer before the next tensor arrives: the loop
                # variable would otherwise keep it alive through the next receive.
                del tensor

        return self._stage(key, write)

    def stage_streams(self, key: ResultKey, streams: Iterator[TensorStream]) -> Staged:
        def write(writer: TensorFileWriter) -> None:
            for stream in streams:
                self.spec.check_layout(stream.name, stream.dtype, stream.shape,
                                       seen=writer.entries)
                writer.write_stream(stream.name, stream.dtype, stream.shape,
                                    finite_pieces(stream.name, stream.dtype, stream.chunks))

        return self._stage(key, write)

    def _stage(self, key: ResultKey, write: Callable[[TensorFileWriter], None]) -> Staged:
        if self.inline:
            memory = MemoryTensorWriter(f"upload {key}")
            return Staged(None, layout_of(self._fill(key, memory, write)), memory.data)
        path = self.store.staging_path(key)
        try:
            writer = TensorFileWriter(path)
        except OSError as exc:
            raise disk_error(path, exc) from None
        entries = self._fill(key, writer, write)
        return Staged(path.name, layout_of(entries))

    def _fill(self, key: ResultKey, writer: TensorFileWriter,
              write: Callable[[TensorFileWriter], None]) -> dict[str, TensorEntry]:
        try:
            write(writer)
            self.spec.check_complete(writer.entries)
            return writer.commit(manifest_file=False)
        except BaseException as exc:
            writer.abort()
            if isinstance(exc, ProtocolError):
                log.warning("refused %s: %s", key, exc.message)
                raise ProtocolError(f"{key}: {exc.message}") from None
            if isinstance(exc, OSError):
                raise disk_error(writer.path, exc) from None
            raise


def refuse_tensors(key: ResultKey, names: Iterator[str]) -> None:
    """A metrics-only result must carry no tensors."""
    for name in names:
        raise ProtocolError(f"{key}: a validation result carries no tensors (got {name!r})")


def clear_staging(store: StateStore) -> int:
    """Remove the staging folder of a federation that has ended (done or failed): no update in
    it will ever be applied. Returns the number of files removed. Call it only when no upload
    can arrive any more (the server stopped), and never for a federation that may resume."""
    folder = store.staging
    if not folder.is_dir():
        return 0
    removed = 0
    for path in folder.iterdir():
        with contextlib.suppress(FileNotFoundError):  # (the closer deletes old files too)
            path.unlink()
            removed += 1
    with contextlib.suppress(OSError):
        folder.rmdir()
    if removed:
        log.info("removed %d leftover staging file(s) from %s", removed, folder)
    return removed
