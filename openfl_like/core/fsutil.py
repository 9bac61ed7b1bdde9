"""Atomic file writes: a crash leaves either the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644


def fsync_dir(directory: Path, *, strict: bool = False) -> None:
    """Make the names in ``directory`` (a new or renamed file's entry) survive a crash.

    ``strict``: raise when that fails (state that counts on it); otherwise best effort.
    """
    try:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        if strict:
            raise


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str], *, mode: int = PUBLIC_MODE, overwrite: bool = True
) -> Iterator[IO[bytes]]:
    """Yield a binary file that replaces ``path`` only when the block ends without error.

    The temporary file is created in the target folder with ``mode`` from the start (so a secret
    is never readable by others, not even briefly), fsynced, then renamed over the target.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not overwrite and target.exists():
        raise FileExistsError(str(target))
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if not overwrite and target.exists():
            raise FileExistsError(str(target))
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write(
    path: str | os.PathLike[str], data: bytes | str, *, mode: int = PUBLIC_MODE,
    overwrite: bool = True,
) -> None:
    """Write ``data`` to ``path`` atomically with permissions ``mode``."""
    payload = data.encode() if isinstance(data, str) else data
    with atomic_open(path, mode=mode, overwrite=overwrite) as handle:
        handle.write(payload)


def replace_derived(path: str | os.PathLike[str], data: bytes | str) -> None:
    """Replace a file that is derived from durable state (status, metrics, plots) by rename.

    Readers never see half a file, but nothing is fsynced: after a crash the file is simply
    written again, so paying two disk flushes on every refresh would buy nothing.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, target)
