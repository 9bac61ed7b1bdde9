"""Per-peer caps on concurrent calls: one certificate cannot hold the server's workers.

The sync server parks one worker thread per open stream or long-poll. Without a cap, one client
(or a stolen, or revoked-but-still-connected, certificate) could open calls until every worker
is parked and everyone else waits. :class:`PeerSlots` counts calls per peer key (certificate
fingerprint; participant name without TLS) and refuses one more with ``ResourceExhaustedError``
(RESOURCE_EXHAUSTED, which our clients retry with backoff). The slot is released when the
``hold`` block exits, whatever the exit.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from openfl_like.core.errors import ResourceExhaustedError


class PeerSlots:
    """At most ``cap`` concurrent ``what`` (e.g. "streams") per peer key."""

    def __init__(self, what: str, cap: int) -> None:
        if cap < 1:
            raise ValueError(f"cap must be >= 1, got {cap}")
        self.what = what
        self.cap = cap
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, key: str, who: str) -> Iterator[None]:
        """One slot of ``key`` for the block; ResourceExhaustedError when all are taken."""
        with self._lock:
            held = self._counts.get(key, 0)
            if held >= self.cap:
                raise ResourceExhaustedError(
                    f"{who or 'this peer'} has {held} {self.what} open already, the limit per "
                    f"participant; retry when one has finished"
                )
            self._counts[key] = held + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._counts[key] - 1
                if left:
                    self._counts[key] = left
                else:
                    del self._counts[key]

    def in_use(self, key: str | None = None) -> int:
        """Slots held by ``key`` (all keys when None): for tests and status."""
        with self._lock:
            return self._counts.get(key, 0) if key is not None else sum(self._counts.values())
