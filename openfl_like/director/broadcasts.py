"""Messages to every envoy (cancel, shutdown, notices), each delivered once per envoy within a
time-to-live. A message past its TTL is dropped, never delivered late: an envoy that was away
for an hour must not act on an hour-old "cancel" as if it were news."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from openfl_like.core.experiments import Broadcast, BroadcastKind


@dataclass
class _Pending:
    message: Broadcast
    created: float
    delivered: set[str] = field(default_factory=set)


class Broadcasts:
    def __init__(self, *, ttl_seconds: float, clock: Callable[[], float]) -> None:
        self.ttl = ttl_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._pending: list[_Pending] = []
        self._ids = itertools.count(1)

    def add(self, kind: BroadcastKind, text: str = "", experiment: str = "") -> Broadcast:
        now = self.clock()
        with self._lock:
            message = Broadcast(id=f"{int(now)}-{next(self._ids)}", kind=kind,
                                experiment=experiment, text=text)
            self._expire(now)
            self._pending.append(_Pending(message, now))
        return message

    def take(self, envoy: str) -> tuple[Broadcast, ...]:
        """The live messages ``envoy`` has not had yet, marked as delivered to it."""
        now = self.clock()
        with self._lock:
            self._expire(now)
            out = []
            for pending in self._pending:
                if envoy not in pending.delivered:
                    pending.delivered.add(envoy)
                    out.append(pending.message)
        return tuple(out)

    def has_for(self, envoy: str) -> bool:
        now = self.clock()
        with self._lock:
            self._expire(now)
            return any(envoy not in p.delivered for p in self._pending)

    def live(self) -> int:
        """Messages within their time-to-live (delivered to some envoys or not yet)."""
        now = self.clock()
        with self._lock:
            self._expire(now)
            return len(self._pending)

    def _expire(self, now: float) -> None:
        self._pending = [p for p in self._pending if now - p.created <= self.ttl]
