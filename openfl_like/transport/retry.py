"""Retry with exponential backoff and full jitter, capped per wait, bounded by a total deadline.

Wait n (n = 0, 1, ...) is ``uniform(0, min(max_backoff, initial * multiplier**n))`` ("full
jitter": many clients that lost the same server do not come back in lock-step). Retrying stops
when the next wait would pass the total deadline, or at once when ``is_retryable`` says the
error is final (authorisation, plan mismatch, malformed request). Clock, sleep and random source
are injectable so tests run on a fake clock and never really wait.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from openfl_like.core.logging import get_logger
from openfl_like.transport.settings import RetrySettings

T = TypeVar("T")
_log = get_logger(__name__)


class RetryExhausted(Exception):
    """Raised by :meth:`RetryPolicy.call` when the total deadline passes; wraps the last error."""

    def __init__(self, last: BaseException, attempts: int, elapsed: float) -> None:
        super().__init__(f"gave up after {attempts} attempts in {elapsed:.1f}s: {last}")
        self.last = last
        self.attempts = attempts
        self.elapsed = elapsed


@dataclass
class RetryPolicy:
    initial_backoff: float = 0.5
    max_backoff: float = 10.0
    multiplier: float = 2.0
    total_seconds: float = 300.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def from_settings(cls, settings: RetrySettings, **overrides: object) -> RetryPolicy:
        policy = cls(
            initial_backoff=settings.initial_backoff_seconds,
            max_backoff=settings.max_backoff_seconds,
            multiplier=settings.multiplier,
            total_seconds=settings.total_seconds,
        )
        for name, value in overrides.items():
            setattr(policy, name, value)
        return policy

    def cap(self, attempt: int) -> float:
        """Upper bound of wait number ``attempt`` (0-based) before jitter."""
        return float(min(self.max_backoff, self.initial_backoff * self.multiplier**attempt))

    def waits(self) -> Iterator[float]:
        """The jittered waits, forever (the deadline is applied by :meth:`call`)."""
        attempt = 0
        while True:
            yield self.rng.uniform(0.0, self.cap(attempt))
            attempt += 1

    def call(
        self,
        operation: Callable[[], T],
        *,
        is_retryable: Callable[[BaseException], bool],
        describe: str = "call",
        on_retry: Callable[[BaseException, float], None] | None = None,
    ) -> T:
        """Run ``operation`` until it succeeds, a final error, or the total deadline."""
        start = self.clock()
        for attempts, wait in enumerate(self.waits(), start=1):
            try:
                return operation()
            except Exception as error:
                if not is_retryable(error):
                    raise
                elapsed = self.clock() - start
                if elapsed + wait > self.total_seconds:
                    raise RetryExhausted(error, attempts, elapsed) from error
                _log.info("%s failed (%s); retry %d in %.2fs", describe, _brief(error), attempts,
                          wait)
                if on_retry is not None:
                    on_retry(error, wait)
                self.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover - waits() never ends


def _brief(error: BaseException) -> str:
    """One line for a log: 'UNAVAILABLE: details' for an RPC error, else the error's text."""
    code, details = getattr(error, "code", None), getattr(error, "details", None)
    if callable(code) and callable(details):
        status = code()
        return f"{getattr(status, 'name', status)}: {details()}"
    return str(error).splitlines()[0] if str(error) else type(error).__name__
