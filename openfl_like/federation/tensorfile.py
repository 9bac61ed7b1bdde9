"""A flat on-disk tensor container: raw bytes back to back plus a JSON manifest beside them.

Why not ``.npz``: a zip cannot be appended to tensor by tensor while a stream arrives, and its
members cannot be read in blocks without inflating each one whole. Here a writer streams each
array's buffer straight to disk (no copy for contiguous arrays), and a reader fetches any block
of any tensor with one ``readinto`` into a buffer the caller reuses, so aggregating N updates
costs a few block buffers of memory, not N models. The manifest is written (atomically) only
after the data is fsynced: a file without its manifest is an interrupted write. Or the caller
keeps the manifest in its own durable record (``commit(manifest_file=False)``, ``layout_of``):
the aggregator's staged updates carry theirs in the journal line that applies them.

Checksums: every tensor's bytes carry a CRC-32 in the layout (computed while they stream past,
~2 GB/s here), and the manifest file carries the SHA-256 of its own body. A reader checks each
tensor's CRC when it has read the tensor through (whole, or block by block in order), so a
changed byte on disk is an error that names the file, never a silently different model. A reader
may skip that check (``verify=False``) for a file this process wrote itself moments ago.

Why a background ``fdatasync`` while writing: the kernel would otherwise hold every dirty page
until ``commit`` and then write the whole file on the caller's critical path (~0.5 s per 256 MiB
here). Syncing every ``SYNC_EVERY_BYTES`` from a helper thread (it releases the GIL) lets the disk
work while the caller receives or computes the next tensor, so ``commit`` only waits for the tail.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np

from openfl_like.core.errors import FederationError
from openfl_like.core.fsutil import atomic_write, fsync_dir

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
    crc32: int | None = None  # of the tensor's bytes; None in files written before checksums

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize


def manifest_path(path: Path) -> Path:
    return path.with_name(path.name + MANIFEST_SUFFIX)


Layout = dict[str, dict[str, Any]]  # name -> {dtype, shape, offset, crc32}


def layout_of(entries: Mapping[str, TensorEntry]) -> Layout:
    layout: Layout = {}
    for name, e in entries.items():
        item: dict[str, Any] = {"dtype": e.dtype.str, "shape": list(e.shape), "offset": e.offset}
        if e.crc32 is not None:
            item["crc32"] = e.crc32
        layout[name] = item
    return layout


def entries_of(layout: Mapping[str, Mapping[str, Any]]) -> dict[str, TensorEntry]:
    return {name: TensorEntry(name, np.dtype(v["dtype"]), tuple(int(d) for d in v["shape"]),
                              int(v["offset"]),
                              None if v.get("crc32") is None else int(v["crc32"]))
            for name, v in layout.items()}


def encode_manifest(entries: Mapping[str, TensorEntry]) -> str:
    """The manifest file's text: the layout plus the SHA-256 of the layout's JSON."""
    body = json.dumps(layout_of(entries), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(body.encode()).hexdigest()
    return f'{{"sha256":"{digest}","tensors":{body}}}'


def decode_manifest(path: Path, text: str) -> dict[str, TensorEntry]:
    """Entries of a manifest file; a checksum mismatch is an error naming ``path``."""
    raw = json.loads(text)
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    if "tensors" not in raw:  # written before manifests had checksums
        return entries_of(raw)
    body = json.dumps(raw["tensors"], sort_keys=True, separators=(",", ":"))
    if hashlib.sha256(body.encode()).hexdigest() != raw.get("sha256"):
        raise FederationError(f"{path}: manifest checksum mismatch (the file was changed)")
    return entries_of(raw["tensors"])



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
        """Write all of ``data``; a short write is continued, a write of nothing is an error."""
        assert self._handle is not None
        done = 0
        while done < len(data):
            wrote = self._handle.write(data[done:done + _WRITE_PIECE])
            if not wrote:
                raise OSError(f"{self.path}: short write (nothing written)")
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
        crc = 0
        if data.nbytes:
            view = memoryview(data.reshape(-1)).cast("B")
            crc = zlib.crc32(view)
            self._write_bytes(view)
        self._offset += data.nbytes
        self._entries[name] = TensorEntry(name, dtype, tuple(int(d) for d in data.shape),
                                          self._offset - data.nbytes, crc)

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
        written = crc = 0
        for piece in pieces:
            view = memoryview(piece).cast("B")
            if written + len(view) > entry.nbytes:
                raise FederationError(f"{self.path}: tensor {name!r} overruns its "
                                      f"{entry.nbytes} bytes")
            crc = zlib.crc32(view, crc)
            self._write_bytes(view)
            written += len(view)
            self._offset += len(view)
        if written != entry.nbytes:
            raise FederationError(f"{self.path}: tensor {name!r} got {written} of its "
                                  f"{entry.nbytes} bytes")
        self._entries[name] = TensorEntry(entry.name, entry.dtype, entry.shape, entry.offset, crc)

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
            atomic_write(manifest_path(self.path), encode_manifest(self._entries))
        else:
            fsync_dir(self.path.parent, strict=True)  # the new file's name must survive a crash too
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
    """Block reads of a committed tensor file (``entries``: its layout, kept elsewhere).

    With ``verify`` each tensor's CRC-32 is checked once it has been read through in order
    (``read``, or ``read_into`` from element 0 upwards without gaps); a mismatch raises
    FederationError naming the file and tensor.
    """

    def __init__(self, path: str | os.PathLike[str],
                 entries: Mapping[str, TensorEntry] | None = None, *,
                 verify: bool = True) -> None:
        self.path = Path(path)
        self.verify = verify
        self._progress: dict[str, tuple[int, int]] = {}  # name -> (next element, running crc)
        try:
            self.entries: dict[str, TensorEntry] = (
                dict(entries) if entries is not None
                else decode_manifest(manifest_path(self.path),
                                     manifest_path(self.path).read_text())
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
        if self.verify and entry.crc32 is not None:
            self._check(entry, start, len(out), view)
        return out

    def _check(self, entry: TensorEntry, start: int, count: int, view: memoryview) -> None:
        expected_start, crc = self._progress.get(entry.name, (0, 0))
        if start == 0:
            crc = 0
        elif start != expected_start:
            return  # not an in-order pass: nothing to conclude from this read
        crc = zlib.crc32(view, crc)
        done = start + count
        if done >= entry.size:
            self._progress.pop(entry.name, None)
            if crc != entry.crc32:
                raise FederationError(
                    f"{self.path}: tensor {entry.name!r} fails its checksum (the file was "
                    "changed or damaged on disk)"
                )
        else:
            self._progress[entry.name] = (done, crc)

    def read(self, name: str) -> np.ndarray:
        entry = self.entries[name]
        out = np.empty(entry.size, dtype=entry.dtype)
        if entry.size:
            self.read_into(name, 0, out)
        elif self.verify and entry.crc32 not in (None, 0):
            raise FederationError(f"{self.path}: tensor {name!r} fails its checksum")
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


def read_tensor_file(path: str | os.PathLike[str], *, verify: bool = True
                     ) -> dict[str, np.ndarray]:
    with TensorFileReader(path, verify=verify) as reader:
        return reader.read_all()
