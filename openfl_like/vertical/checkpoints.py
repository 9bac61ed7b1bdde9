"""A party's training checkpoints: numbered by step (the *version*), checksummed, atomic, and
the last ``keep`` of them kept.

One checkpoint is one ``.npz`` file (``ckpt-0000000120.npz``): the caller's arrays (model
weights, optimizer variables), ``__meta__`` (JSON as uint8: version, epoch, sample index) and
``__sha256__``, a digest of everything else (names, dtypes, shapes, bytes). It is written aside,
fsynced and renamed (``core.fsutil``), so a crash leaves the old set or the new one; a file whose
digest does not match is reported and skipped, never trusted. Loading never unpickles.

Why versions are steps: the two parties save at the same step numbers, so "the newest version
both hold" (``agreement.agree_checkpoint``) is the newest point both can restart from together.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from openfl_like.core.errors import DataError
from openfl_like.core.fsutil import atomic_write
from openfl_like.core.logging import get_logger

log = get_logger(__name__)

_NAME = re.compile(r"^ckpt-(\d{10})\.npz$")
_META, _SUM = "__meta__", "__sha256__"


@dataclass(frozen=True)
class CheckpointMeta:
    """Where training stood when the checkpoint was taken: after ``version`` steps, about to
    read sample ``sample_index`` of epoch ``epoch``'s order."""

    version: int
    epoch: int
    sample_index: int


class CorruptCheckpointError(DataError):
    """A checkpoint file that is unreadable or whose checksum does not match."""


def _digest(arrays: Mapping[str, np.ndarray]) -> bytes:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.asarray(arrays[name], order="C")  # (ascontiguousarray makes 0-d 1-d)
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.digest()


class CheckpointStore:
    """The checkpoints of one party in ``folder``."""

    def __init__(self, folder: Path, *, keep: int) -> None:
        if keep < 1:
            raise ValueError("keep must be >= 1")
        self.folder = folder
        self.keep = keep
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(".ckpt-*.tmp"):  # a write cut short by a crash
            with contextlib.suppress(OSError):
                stale.unlink()

    def path(self, version: int) -> Path:
        return self.folder / f"ckpt-{version:010d}.npz"

    def _files(self) -> dict[int, Path]:
        found: dict[int, Path] = {}
        for entry in self.folder.iterdir():
            match = _NAME.match(entry.name)
            if match:
                found[int(match.group(1))] = entry
        return found

    def save(self, meta: CheckpointMeta, arrays: Mapping[str, np.ndarray]) -> Path:
        """Write checkpoint ``meta.version`` atomically, then drop all but the newest ``keep``."""
        if meta.version <= 0:
            raise ValueError("checkpoint versions start at 1 (0 means a fresh start)")
        for name in arrays:
            if name.startswith("__"):
                raise ValueError(f"array name {name!r} is reserved")
        payload = {name: np.asarray(a, order="C") for name, a in arrays.items()}
        payload[_META] = np.frombuffer(json.dumps(asdict(meta)).encode(), dtype=np.uint8)
        payload[_SUM] = np.frombuffer(_digest(payload), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, allow_pickle=False, **payload)
        target = self.path(meta.version)
        atomic_write(target, buffer.getvalue())
        self._prune()
        return target

    def _prune(self) -> None:
        files = self._files()
        for version in sorted(files)[:-self.keep]:
            with contextlib.suppress(OSError):
                files[version].unlink()

    def load(self, version: int) -> tuple[CheckpointMeta, dict[str, np.ndarray]]:
        """The checkpoint's meta and arrays; CorruptCheckpointError if it does not verify."""
        path = self.path(version)
        try:
            raw_bytes = path.read_bytes()  # np.load(path) leaks its handle on a non-zip file
        except FileNotFoundError:
            raise CorruptCheckpointError(f"{path}: checkpoint {version} not found") from None
        try:
            with np.load(io.BytesIO(raw_bytes), allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
        except Exception as exc:  # zip, CRC and format errors have no common base class
            raise CorruptCheckpointError(f"{path}: unreadable checkpoint ({exc})") from None
        stored = arrays.pop(_SUM, None)
        if stored is None or stored.dtype != np.uint8 or bytes(stored) != _digest(arrays):
            raise CorruptCheckpointError(f"{path}: checksum mismatch (the file was changed or "
                                         "damaged)")
        try:
            raw = json.loads(bytes(arrays.pop(_META)).decode())
            meta = CheckpointMeta(version=int(raw["version"]), epoch=int(raw["epoch"]),
                                  sample_index=int(raw["sample_index"]))
        except (KeyError, ValueError, TypeError, UnicodeDecodeError) as exc:
            raise CorruptCheckpointError(f"{path}: malformed meta ({exc})") from None
        if meta.version != version:
            raise CorruptCheckpointError(f"{path}: holds version {meta.version}, not {version}")
        return meta, arrays

    def valid_versions(self) -> list[int]:
        """Versions whose file verifies, oldest first; a corrupt one is logged and skipped."""
        good: list[int] = []
        for version in sorted(self._files()):
            try:
                self.load(version)
            except CorruptCheckpointError as exc:
                log.warning("skipping checkpoint %d: %s", version, exc.message)
                continue
            good.append(version)
        return good

    def drop_newer_than(self, version: int) -> None:
        """Forget checkpoints after ``version`` (a restart from an older common point makes
        them a timeline that no longer exists)."""
        for found, path in self._files().items():
            if found > version:
                with contextlib.suppress(OSError):
                    path.unlink()

    def clear(self) -> None:
        """Every checkpoint (a ``--fresh`` start)."""
        self.drop_newer_than(0)
