"""Receiving an update: validate each tensor as it streams in and write it to a staging file.

Over gRPC each tensor arrives chunk by chunk (``TensorStream``: layout checked first, then the
values of every chunk), so an upload holds about one chunk in memory whatever its size. Any
refusal (bad layout, bytes or values, a broken stream, a full disk) removes the file before the
update could be journalled, so a refused update leaves nothing behind. The staged file's layout,
with a CRC-32 per tensor, goes into the journal line that applies it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from openfl_like.core.errors import ProtocolError
from openfl_like.core.logging import get_logger
from openfl_like.core.messages import NamedTensor, ResultKey, TensorStream
from openfl_like.federation.state import StateStore, disk_error
from openfl_like.federation.tensorfile import Layout, TensorFileWriter, layout_of
from openfl_like.federation.validation import ModelSpec, finite_pieces

log = get_logger(__name__)


class Stager:
    """Writes updates of a model shaped like ``spec`` into ``store``'s staging folder."""

    def __init__(self, store: StateStore, spec: ModelSpec) -> None:
        self.store = store
        self.spec = spec

    def stage_tensors(self, key: ResultKey, tensors: Iterator[NamedTensor]) -> tuple[str, Layout]:
        def write(writer: TensorFileWriter) -> None:
            for tensor in tensors:
                self.spec.check_tensor(tensor.name, tensor.array, seen=writer.entries)
                writer.write(tensor.name, tensor.array)
                # Let go of the received buffer before the next tensor arrives: the loop
                # variable would otherwise keep it alive through the next receive.
                del tensor

        return self._stage(key, write)

    def stage_streams(self, key: ResultKey, streams: Iterator[TensorStream]
                      ) -> tuple[str, Layout]:
        def write(writer: TensorFileWriter) -> None:
            for stream in streams:
                self.spec.check_layout(stream.name, stream.dtype, stream.shape,
                                       seen=writer.entries)
                writer.write_stream(stream.name, stream.dtype, stream.shape,
                                    finite_pieces(stream.name, stream.dtype, stream.chunks))

        return self._stage(key, write)

    def _stage(self, key: ResultKey, write: Callable[[TensorFileWriter], None]
               ) -> tuple[str, Layout]:
        path = self.store.staging_path(key)
        try:
            writer = TensorFileWriter(path)
        except OSError as exc:
            raise disk_error(path, exc) from None
        try:
            write(writer)
            self.spec.check_complete(writer.entries)
            entries = writer.commit(manifest_file=False)
        except BaseException as exc:
            writer.abort()
            if isinstance(exc, ProtocolError):
                log.warning("refused %s: %s", key, exc.message)
                raise ProtocolError(f"{key}: {exc.message}") from None
            if isinstance(exc, OSError):
                raise disk_error(path, exc) from None
            raise
        return path.name, layout_of(entries)


def refuse_tensors(key: ResultKey, names: Iterator[str]) -> None:
    """A metrics-only result must carry no tensors."""
    for name in names:
        raise ProtocolError(f"{key}: a validation result carries no tensors (got {name!r})")
