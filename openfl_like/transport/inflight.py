"""Bytes of uploads in flight, per participant: what an operator's status shows while a large
update streams in.

One counter add per received chunk (a few MiB), under a lock held for that add only; a
participant's entry disappears when its last upload ends, however it ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, TypeVar


class _Sized(Protocol):
    @property
    def data(self) -> bytes | memoryview: ...


C = TypeVar("C", bound=_Sized)


@dataclass
class _Entry:
    uploads: int
    received: int
    since: float


class UploadsInFlight:
    """Counts the bytes received so far by each participant's running uploads."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}

    def count(self, name: str, chunks: Iterable[C]) -> Iterator[C]:
        """``chunks`` passed through, each one's bytes counted for ``name`` while it streams."""
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                entry = self._entries[name] = _Entry(0, 0, self._clock())
            entry.uploads += 1
        try:
            for chunk in chunks:
                with self._lock:
                    entry.received += len(chunk.data)
                yield chunk
        finally:
            with self._lock:
                entry.uploads -= 1
                if entry.uploads == 0 and self._entries.get(name) is entry:
                    del self._entries[name]

    def snapshot(self) -> dict[str, dict[str, float]]:
        """{participant: {"bytes": received so far, "seconds": since its first upload began}}."""
        now = self._clock()
        with self._lock:
            return {name: {"bytes": e.received, "seconds": round(now - e.since, 3)}
                    for name, e in sorted(self._entries.items())}


__all__ = ["UploadsInFlight"]
