"""The open round's journal: one checksummed line per accepted result, group-committed.

A result is *applied* exactly when its line is durable: a crash before leaves it unapplied (the
collaborator's retry sends it again), a crash after leaves it applied (the retry is answered as
a duplicate). Lines carry the SHA-256 of their body; ``StateStore`` reads them back (a torn last
line is cut, a damaged line with good lines after it is refused).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from openfl_like.core.errors import FederationError, OpenflLikeError, UnavailableError
from openfl_like.core.fsutil import fsync_dir
from openfl_like.core.messages import ResultKey
from openfl_like.federation.tensorbuffer import decode_inline, encode_inline
from openfl_like.federation.tensorfile import Layout, TensorEntry, entries_of


@dataclass(frozen=True)
class ResultRecord:
    """One accepted result of the open round."""

    key: ResultKey
    data_size: int
    metrics: dict[str, float]
    staged: str | None = None  # staging file name (train results only)
    # The staged file's manifest (tensorfile.layout_of): durable in this checksummed line, so
    # the staged file needs no manifest file of its own. None: it has one (older state).
    layout: Layout | None = None
    # A small update's bytes, kept in this line instead of a staging file (tensorbuffer).
    inline: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        raw: dict[str, Any] = {"key": asdict(self.key), "data_size": self.data_size,
                               "metrics": self.metrics, "staged": self.staged}
        if self.layout is not None:
            raw["layout"] = self.layout
        if self.inline is not None:
            raw["inline"] = encode_inline(self.inline)
        return raw

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ResultRecord:
        inline = raw.get("inline")
        return cls(ResultKey(**raw["key"]), int(raw["data_size"]),
                   {str(k): float(v) for k, v in raw["metrics"].items()}, raw.get("staged"),
                   raw.get("layout"), None if inline is None else decode_inline(inline))

    @property
    def has_update(self) -> bool:
        return self.staged is not None or self.inline is not None

    def staged_entries(self) -> dict[str, TensorEntry] | None:
        return None if self.layout is None else entries_of(self.layout)


def _line(record: ResultRecord) -> bytes:
    body = json.dumps(record.to_json(), sort_keys=True, separators=(",", ":"))
    return f"{hashlib.sha256(body.encode()).hexdigest()} {body}\n".encode()


def parse_line(raw_line: bytes) -> ResultRecord:
    text = raw_line.decode()
    digest, _, body = text.rstrip("\n").partition(" ")
    if not text.endswith("\n") or hashlib.sha256(body.encode()).hexdigest() != digest:
        raise ValueError("checksum")
    return ResultRecord.from_json(json.loads(body))


def disk_error(path: Path, exc: OSError) -> OpenflLikeError:
    """A write that failed: out of space is the server's passing problem (clients retry)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return UnavailableError(f"the aggregator is out of disk space (writing {path}); "
                                "retry later")
    return FederationError(f"cannot write {path}: {exc.strerror or exc}")


class Journal:
    """The open round's append-only journal file, with group commit.

    Each line is written whole (a short write is continued; a failed one is cut back off, so no
    torn line is ever followed by a good one) and made durable by ``fsync``. Appenders that
    arrive while another one syncs wait for that sync to finish and then find their line
    covered, so N concurrent results cost about one fsync, not N (group commit).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        created = not path.exists()
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            if created:
                fsync_dir(path.parent, strict=True)  # the journal's name must survive a crash too
        except OSError as exc:
            raise disk_error(path, exc) from None
        self._size = os.fstat(self._fd).st_size
        self._write_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._written = 0  # lines written by this object
        self._synced = 0  # lines known durable
        self._closed = False

    def append(self, record: ResultRecord) -> int:
        """Write one line (not yet durable); returns the ticket that ``sync`` waits for."""
        data = _line(record)
        with self._write_lock:
            if self._closed:
                raise FederationError(f"{self.path}: the round's journal is closed")
            try:
                done = 0
                while done < len(data):
                    wrote = os.write(self._fd, data[done:])
                    if wrote <= 0:
                        raise OSError(errno.EIO, "short write")
                    done += wrote
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._size)  # never leave half a line behind
                raise disk_error(self.path, exc) from None
            self._size += len(data)
            self._written += 1
            return self._written

    def sync(self, upto: int) -> None:
        """Return once line ``upto`` is on disk; one fsync serves every line written so far."""
        with self._sync_lock:
            if self._synced >= upto:
                return  # another appender's fsync covered this line
            with self._write_lock:
                if self._closed:
                    return  # the round closed: its snapshot made the line's effect durable
                target = self._written
                fd = os.dup(self._fd)
            try:
                os.fsync(fd)
            except OSError as exc:
                raise disk_error(self.path, exc) from None
            finally:
                os.close(fd)
            self._synced = target

    def close(self) -> None:
        with self._write_lock:
            if not self._closed:
                self._closed = True
                with contextlib.suppress(OSError):
                    os.close(self._fd)
