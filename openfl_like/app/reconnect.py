"""A collaborator's view of an outage, in its log: when the connection was lost, when it is back.

``OutageLoggingRetry`` is the client's ``RetryPolicy`` plus two INFO lines per outage, shared by
every call of the process (the long-poll, uploads, the heartbeat thread):

    col1: connection to the aggregator lost (GetTasks: UNAVAILABLE: ...); retrying
    col1: reconnected to the aggregator after 12.3 s

Only UNAVAILABLE and DEADLINE_EXCEEDED count as an outage; a per-peer cap
(RESOURCE_EXHAUSTED) is the aggregator being busy, not gone. The per-attempt lines of
``transport.retry`` stay as they are.

"Reconnected" is logged when a call succeeds, or when a call made during the outage is still
in progress after ``PROBE_SECONDS`` (a long-poll parks for long at a live aggregator, while a
refused connection fails at once); the time reported is until that call started. Should that
call fail after all, the next "lost" line says so.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import grpc

from openfl_like.core.logging import get_logger
from openfl_like.transport.retry import RetryPolicy

T = TypeVar("T")
log = get_logger(__name__)

PROBE_SECONDS = 2.0
_OUTAGE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


def is_outage(error: BaseException) -> bool:
    code = getattr(error, "code", None)
    return callable(code) and code() in _OUTAGE_CODES


class OutageLog:
    """Start and end of the current outage (thread-safe); logs each once."""

    def __init__(self, who: str) -> None:
        self.who = who
        self.since: float | None = None
        self._lock = threading.Lock()

    def lost(self, what: str, error: BaseException, now: float) -> None:
        with self._lock:
            if self.since is not None:
                return
            self.since = now
        details = getattr(error, "details", None)
        text = details() if callable(details) else str(error)
        code = getattr(error, "code", None)
        name = getattr(code(), "name", "") if callable(code) else ""
        log.info("%s: connection to the aggregator lost (%s: %s%s); retrying", self.who, what,
                 f"{name}: " if name else "", (text or "").splitlines()[0] if text else "")

    def back(self, at: float) -> None:
        """The connection works again since ``at`` (logged once per outage)."""
        with self._lock:
            since, self.since = self.since, None
        if since is not None:
            log.info("%s: reconnected to the aggregator after %.1f s", self.who,
                     max(0.0, at - since))


@dataclass
class OutageLoggingRetry(RetryPolicy):
    """``RetryPolicy`` that also reports outages to ``outage`` (module docstring)."""

    outage: OutageLog = field(default_factory=lambda: OutageLog("collaborator"))

    def call(
        self,
        operation: Callable[[], T],
        *,
        is_retryable: Callable[[BaseException], bool],
        describe: str = "call",
        on_retry: Callable[[BaseException, float], None] | None = None,
    ) -> T:
        def noted(error: BaseException, wait: float) -> None:
            if is_outage(error):
                self.outage.lost(describe, error, self.clock())
            if on_retry is not None:
                on_retry(error, wait)

        def attempt() -> T:
            if self.outage.since is None:
                return operation()
            started = self.clock()
            # the log context (collaborator, federation) goes along to the timer's thread
            probe = threading.Timer(PROBE_SECONDS, contextvars.copy_context().run,
                                    args=(self.outage.back, started))
            probe.daemon = True
            probe.start()
            try:
                return operation()
            finally:
                probe.cancel()

        result = super().call(attempt, is_retryable=is_retryable, describe=describe,
                              on_retry=noted)
        self.outage.back(self.clock())
        return result
