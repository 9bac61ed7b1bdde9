"""File streams of the director service: packages and models as ``PackageChunk`` messages.

Both directions hold one chunk in memory at a time, never a whole file:

* :func:`outgoing_chunks` reads ``OutgoingFile``s lazily from disk, header on the first message,
  each file's first chunk with its name, size and sha256;
* :func:`incoming_files` turns a chunk stream back into ``IncomingFile``s whose ``chunks`` are
  read off the stream on demand, checking as they go: plain file names, each name once, every
  file exactly its declared size, the declared sizes together never above ``max_total`` (and
  equal to ``expected_total`` when given). A file the reader skips is drained (and checked)
  before the next one starts. The sha256 is not checked here: the receiver does that
  (:func:`write_file` on the client, the director logic on the server);
* :func:`write_file` writes an incoming file atomically and checks its sha256;
* :func:`submission_requests` streams local files as a SetNewExperiment request stream.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from openfl_like.core.errors import OpenflLikeError, ProtocolError, ResourceLimitError
from openfl_like.core.experiments import IncomingFile, OutgoingFile, Submission
from openfl_like.core.fsutil import atomic_open
from openfl_like.protocol import base_pb2
from openfl_like.protocol import director_pb2 as pb
from openfl_like.protocol.director_convert import check_file_name

_READ_SIZE = 1024 * 1024


# -- sending ---------------------------------------------------------------------------------


def outgoing_chunks(
    files: Iterable[OutgoingFile], header: base_pb2.MessageHeader | None, chunk_size: int
) -> Iterator[pb.PackageChunk]:
    """The files as PackageChunk messages, ``header`` on the first; read lazily from disk."""
    for file in files:
        try:
            name = check_file_name(file.path)
        except ProtocolError as exc:  # our own file list is wrong: not the caller's fault
            raise OpenflLikeError(f"cannot serve {file.path!r}: {exc.message}") from None
        chunks = _read_chunks(Path(file.source), file.size, chunk_size, name)
        data = next(chunks, b"")
        yield pb.PackageChunk(header=header, path=name, size=file.size, sha256=file.sha256,
                              data=data)
        header = None
        for data in chunks:
            yield pb.PackageChunk(data=data)
    if header is not None:  # no file at all: still answer with our header
        yield pb.PackageChunk(header=header)


def _read_chunks(path: Path, size: int, chunk_size: int, name: str) -> Iterator[bytes]:
    sent = 0
    with path.open("rb") as handle:
        while sent < size:
            data = handle.read(min(chunk_size, size - sent))
            if not data:
                break
            sent += len(data)
            yield data
        if sent != size or handle.read(1):
            raise OpenflLikeError(f"{name}: the file changed on disk ({size} bytes declared)")


def file_digest(path: Path) -> tuple[int, str]:
    """(size, sha256 hex) of a local file, read in pieces."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        while data := handle.read(_READ_SIZE):
            digest.update(data)
            size += len(data)
    return size, digest.hexdigest()


@dataclass(frozen=True)
class LocalFile:
    name: str
    path: Path
    size: int
    sha256: str


def submission_requests(
    header: base_pb2.MessageHeader, submission: Submission, files: Sequence[LocalFile],
    chunk_size: int,
) -> Iterator[pb.SetNewExperimentRequest]:
    """The SetNewExperiment stream; each file is hashed again on the way and must still match
    what was announced (a file changed during the upload ends the stream with an error)."""
    yield pb.SetNewExperimentRequest(
        header=header,
        submission=pb.ExperimentSubmission(name=submission.name, kind=submission.kind.value,
                                           total_size=submission.total_size),
    )
    for file in files:
        digest = hashlib.sha256()
        first = True
        for data in _read_chunks(file.path, file.size, chunk_size, file.name):
            digest.update(data)
            chunk = (pb.PackageChunk(path=file.name, size=file.size, sha256=file.sha256,
                                     data=data) if first else pb.PackageChunk(data=data))
            first = False
            yield pb.SetNewExperimentRequest(chunk=chunk)
        if first:  # an empty file: one chunk that names it
            yield pb.SetNewExperimentRequest(chunk=pb.PackageChunk(
                path=file.name, size=0, sha256=file.sha256))
        if digest.hexdigest() != file.sha256:
            raise OpenflLikeError(f"{file.path}: the file changed during the upload")


# -- receiving -------------------------------------------------------------------------------


def incoming_files(
    chunks: Iterator[pb.PackageChunk], *, max_total: int, expected_total: int | None = None,
) -> Iterator[IncomingFile]:
    """The files of a chunk stream, read lazily with the checks of the module docstring."""
    return _Reader(chunks, max_total, expected_total).files()


class _Reader:
    def __init__(
        self, chunks: Iterator[pb.PackageChunk], max_total: int, expected_total: int | None
    ) -> None:
        self._chunks = chunks
        self._max_total = max_total
        self._expected_total = expected_total
        self._declared = 0
        self._names: set[str] = set()
        self._next_head: pb.PackageChunk | None = None

    def _next(self) -> pb.PackageChunk | None:
        for chunk in self._chunks:
            if chunk.path or chunk.data:
                return chunk
        return None

    def files(self) -> Iterator[IncomingFile]:
        head = self._next()
        while head is not None:
            if not head.path:
                raise ProtocolError("chunk data outside a file: a file's first chunk names it")
            name = check_file_name(head.path)
            if name in self._names:
                raise ProtocolError(f"file {name!r} is sent twice")
            self._names.add(name)
            if head.size < 0:
                raise ProtocolError(f"file {name!r}: negative size {head.size}")
            self._declared += head.size
            if self._declared > self._max_total:
                raise ResourceLimitError(
                    f"file {name!r} brings the package to {self._declared} bytes, over the "
                    f"limit of {self._max_total}"
                )
            self._next_head = None
            chunks = self._file_chunks(name, head)
            yield IncomingFile(path=name, size=head.size, sha256=head.sha256, chunks=chunks)
            for _ in chunks:  # drain what the reader left unread (still checked)
                pass
            head = self._next_head
        if self._expected_total is not None and self._declared != self._expected_total:
            raise ProtocolError(
                f"the package ended after {self._declared} of the {self._expected_total} bytes "
                "announced"
            )

    def _file_chunks(self, name: str, head: pb.PackageChunk) -> Iterator[bytes]:
        received, chunk = 0, head
        while True:
            received += len(chunk.data)
            if received > head.size:
                raise ProtocolError(f"file {name!r} is longer than its {head.size} bytes")
            if chunk.data:
                yield chunk.data
            following = self._next()
            if following is None or following.path:
                if received != head.size:
                    raise ProtocolError(
                        f"file {name!r} ended after {received} of its {head.size} bytes"
                    )
                self._next_head = following
                return
            chunk = following


def write_file(file: IncomingFile, target: Path) -> Path:
    """Write ``file`` to ``target`` atomically; ProtocolError (nothing written) when its bytes
    do not match its sha256."""
    digest = hashlib.sha256()
    with atomic_open(target) as handle:
        for data in file.chunks:
            digest.update(data)
            handle.write(data)
        if digest.hexdigest() != file.sha256.lower():
            raise ProtocolError(
                f"{file.path}: sha256 mismatch (announced {file.sha256[:16]}..., received "
                f"{digest.hexdigest()[:16]}...); the file was not written"
            )
    return target
