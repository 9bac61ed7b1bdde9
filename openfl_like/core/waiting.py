"""A parked call's wake-up: one per waiter, set by a state change or by the call's end.

Why not one shared condition: waking N parked long-polls through one ``notify_all`` makes each
re-check shared state under the shared lock. With a ``Wakeup`` per waiter, a round close sets N
small flags (O(N)), and the transport cancels exactly one waiter when grpc reports that its
call ended (``context.add_callback(wakeup.cancel)``), without polling ``is_active()``.
"""

from __future__ import annotations

import threading


class Wakeup:
    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._seq = 0
        self.cancelled = False

    @property
    def seq(self) -> int:
        """Read before releasing the state lock; ``wait(seq, ...)`` then misses nothing."""
        return self._seq

    def wake(self) -> None:
        with self._cond:
            self._seq += 1
            self._cond.notify_all()

    def cancel(self) -> None:
        with self._cond:
            self.cancelled = True
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float | None) -> bool:
        """Block until woken after ``seen``, cancelled, or ``timeout``; True unless timed out."""
        with self._cond:
            return self._cond.wait_for(lambda: self._seq != seen or self.cancelled, timeout)
