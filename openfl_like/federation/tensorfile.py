"""A flat on-disk tensor container: raw bytes back to back plus a JSON manifest beside them.

Why not ``.npz``: a zip cannot be appended to tensor by tensor while a stream arrives, and its
members cannot be read in blocks without inflating each one whole. Here a writer streams each
array's buffer straight to disk (no copy for contiguous arrays), and a reader fetches any block
of any tensor with one ``readinto`` into a buffer the caller reuses, so aggregating N updates
costs a few block buffers of memory, not N models. The manifest is written (atomically) only
after the data is fsynced: a file without its manifest is an interrupted write. Or the caller
keeps the manifest in its own durable record (``commit(manifest_file=False)``, ``layout_of``):
the aggregator's staged updates carry theirs in the journal line that applies them.

Why a background ``fdatasync`` while writing: the kernel would otherwise hold every dirty page
until ``commit`` and then write the whole file on the caller's critical path (~0.5 s per 256 MiB
here). Syncing every ``SYNC_EVERY_BYTES`` from a helper thread (it releases the GIL) lets the disk
work while the caller receives or computes the next tensor, so ``commit`` only waits for the tail.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np

from openfl_like.core.errors import FederationError
from openfl_like.core.fsutil import atomic_write

_ALIGN = 64
MANIFEST_SUFFIX = ".json"
SYNC_EVERY_BYTES = 32 << 20
_WRITE_PIECE = 64 << 20  # one write() call at most (Linux caps a write near 2 GiB)


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    offset: int

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize


def manifest_path(path: Path) -> Path:
    return path.with_name(path.name + MANIFEST_SUFFIX)


Layout = dict[str, dict[str, Any]]  # a manifest as JSON: name -> {dtype, shape, offset}


def layout_of(entries: Mapping[str, TensorEntry]) -> Layout:
    return {name: {"dtype": e.dtype.str, "shape": list(e.shape), "offset": e.offset}
            for name, e in entries.items()}


def entries_of(layout: Mapping[str, Mapping[str, Any]]) -> dict[str, TensorEntry]:
    return {name: TensorEntry(name, np.dtype(v["dtype"]), tuple(int(d) for d in v["shape"]),
                              int(v["offset"]))
            for name, v in layout.items()}


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _BackgroundSync:
    """Runs ``fdatasync(fd)`` on a helper thread whenever asked, coalescing requests."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._wake = threading.Condition()
        self._requested = False
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="tensorfile-sync", daemon=True)
        self._thread.start()

    def request(self) -> None:
        with self._wake:
            self._requested = True
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._requested and not self._closing:
                    self._wake.wait()
                if not self._requested:
                    return
                self._requested = False
            # An early sync that fails is only an optimisation lost: commit() syncs again and
            # raises there.
            with contextlib.suppress(OSError):
                os.fdatasync(self._fd)

    def close(self) -> None:
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join()


class TensorFileWriter:
    """Append arrays one by one; ``commit()`` fsyncs the data, then writes the manifest."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Unbuffered: big arrays go to the kernel straight from their own memory.
        self._handle: IO[bytes] | None = open(self.path, "wb", buffering=0)  # noqa: SIM115
        # Started at the first SYNC_EVERY_BYTES only: a small file (a tiny model's update) is
        # synced once in commit(), and a thread per upload would be pure overhead.
        self._sync: _BackgroundSync | None = None
        self._entries: dict[str, TensorEntry] = {}
        self._offset = 0
        self._unsynced = 0

    def _write_bytes(self, data: memoryview) -> None:
        assert self._handle is not None
        done = 0
        while done < len(data):
            wrote = self._handle.write(data[done:done + _WRITE_PIECE])
            if not wrote:
                raise FederationError(f"{self.path}: short write")
            done += wrote
            self._unsynced += wrote
            if self._unsynced >= SYNC_EVERY_BYTES:
                self._unsynced = 0
                if self._sync is None:
                    self._sync = _BackgroundSync(self._handle.fileno())
                self._sync.request()

    def write(self, name: str, array: np.ndarray) -> None:
        if self._handle is None:
            raise FederationError(f"{self.path}: already committed")
        if name in self._entries:
            raise FederationError(f"{self.path}: tensor {name!r} written twice")
        # (np.ascontiguousarray would turn a 0-d array into 1-d; keep the shape exactly.)
        data = array if array.flags.c_contiguous else np.array(array, order="C")
        dtype = data.dtype.newbyteorder("<") if data.dtype.byteorder == ">" else data.dtype
        data = data.astype(dtype, copy=False)
        pad = (-self._offset) % _ALIGN
        if pad:
            self._write_bytes(memoryview(b"\0" * pad))
            self._offset += pad
        entry = TensorEntry(name, dtype, tuple(int(d) for d in data.shape), self._offset)
        if data.nbytes:
            self._write_bytes(memoryview(data.reshape(-1)).cast("B"))
        self._offset += data.nbytes
        self._entries[name] = entry

    def write_stream(self, name: str, dtype: np.dtype[Any], shape: tuple[int, ...],
                     pieces: Iterable[memoryview | bytes]) -> None:
        """Append one tensor given as its raw little-endian bytes in pieces (e.g. as received).

        Only one piece is held at a time. The tensor is listed in ``entries`` only once all of
        its bytes are written; fewer or more bytes than ``dtype x shape`` is an error (the caller
        should then ``abort()``).
        """
        if self._handle is None:
            raise FederationError(f"{self.path}: already committed")
        if name in self._entries:
            raise FederationError(f"{self.path}: tensor {name!r} written twice")
        if dtype.byteorder == ">":
            raise FederationError(f"{self.path}: tensor {name!r}: big-endian bytes")
        pad = (-self._offset) % _ALIGN
        if pad:
            self._write_bytes(memoryview(b"\0" * pad))
            self._offset += pad
        entry = TensorEntry(name, dtype, tuple(int(d) for d in shape), self._offset)
        written = 0
        for piece in pieces:
            view = memoryview(piece).cast("B")
            if written + len(view) > entry.nbytes:
                raise FederationError(f"{self.path}: tensor {name!r} overruns its "
                                      f"{entry.nbytes} bytes")
            self._write_bytes(view)
            written += len(view)
            self._offset += len(view)
        if written != entry.nbytes:
            raise FederationError(f"{self.path}: tensor {name!r} got {written} of its "
                                  f"{entry.nbytes} bytes")
        self._entries[name] = entry

    @property
    def entries(self) -> Mapping[str, TensorEntry]:
        return self._entries

    def commit(self, *, manifest_file: bool = True) -> dict[str, TensorEntry]:
        """Make the data durable, then the manifest; return the entries.

        ``manifest_file=False``: the caller records ``layout_of(entries)`` durably itself (the
        aggregator puts it in the journal line that applies the update, which is fsynced after
        this returns), so only the data and the file's directory entry are synced here: that
        saves a second file's create, fsync and rename per update. Such a file is read with
        ``TensorFileReader(path, entries)``.
        """
        if self._handle is None:
            raise FederationError(f"{self.path}: already committed")
        self._stop_sync()
        os.fdatasync(self._handle.fileno())
        self._handle.close()
        self._handle = None
        if manifest_file:
            atomic_write(manifest_path(self.path),
                         json.dumps(layout_of(self._entries), sort_keys=True))
        else:
            _fsync_dir(self.path.parent)  # the new file's name must survive a crash too
        return dict(self._entries)

    def _stop_sync(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    def abort(self) -> None:
        if self._handle is not None:
            self._stop_sync()
            self._handle.close()
            self._handle = None
        remove_tensor_file(self.path)

    def __enter__(self) -> TensorFileWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            self.abort()
        elif self._handle is not None:
            self.commit()


def write_tensor_file(path: str | os.PathLike[str], tensors: Mapping[str, np.ndarray]) -> None:
    with TensorFileWriter(path) as writer:
        for name in sorted(tensors):
            writer.write(name, tensors[name])


def remove_tensor_file(path: str | os.PathLike[str]) -> None:
    target = Path(path)
    for p in (manifest_path(target), target):
        p.unlink(missing_ok=True)


class TensorFileReader:
    """Block reads of a committed tensor file (``entries``: its layout, kept elsewhere)."""

    def __init__(self, path: str | os.PathLike[str],
                 entries: Mapping[str, TensorEntry] | None = None) -> None:
        self.path = Path(path)
        try:
            self.entries: dict[str, TensorEntry] = (
                dict(entries) if entries is not None
                else entries_of(json.loads(manifest_path(self.path).read_text()))
            )
            self._handle: IO[bytes] = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise FederationError(f"{self.path}: unreadable tensor file ({exc})") from None

    def read_into(self, name: str, start: int, out: np.ndarray) -> np.ndarray:
        """Fill ``out`` (1-D, the tensor's dtype) with elements ``start..start+len(out)``."""
        entry = self.entries[name]
        self._handle.seek(entry.offset + start * entry.dtype.itemsize)
        view = memoryview(out).cast("B")
        got = self._handle.readinto(view)
        if got != len(view):
            raise FederationError(f"{self.path}: tensor {name!r} is truncated")
        return out

    def read(self, name: str) -> np.ndarray:
        entry = self.entries[name]
        out = np.empty(entry.size, dtype=entry.dtype)
        if entry.size:
            self.read_into(name, 0, out)
        return out.reshape(entry.shape)

    def read_all(self) -> dict[str, np.ndarray]:
        return {name: self.read(name) for name in self.entries}

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> TensorFileReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)


def read_tensor_file(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    with TensorFileReader(path) as reader:
        return reader.read_all()
