"""Exclusive process locks (flock): one aggregator per state folder, one process per collaborator.

The kernel releases a flock when its process dies, so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from openfl_like.app.common import Workspace
from openfl_like.core.errors import FederationError

AGGREGATOR_LOCK = "aggregator.lock"


class LockHeldError(FederationError):
    """Another live process holds the lock; ``holder`` is its pid as it wrote it (or a phrase)."""

    def __init__(self, message: str, *, path: Path, holder: str) -> None:
        super().__init__(message)
        self.path = path
        self.holder = holder


class ProcessLock:
    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> ProcessLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise LockHeldError(
                f"{self.what} is already running on this host (pid {holder}, lock {self.path})",
                path=self.path, holder=holder,
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ProcessLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def aggregator_lock(ws: Workspace) -> ProcessLock:
    """The lock `fx aggregator start` holds while it serves ``ws``; `fx plan run` takes it too
    while it inspects or clears the workspace, so it never deletes a live aggregator's state."""
    return ProcessLock(ws.locks_dir / AGGREGATOR_LOCK, f"the aggregator of {ws.root}")
