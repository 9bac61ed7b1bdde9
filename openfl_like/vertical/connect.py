"""First contact with the peer: Connect with exponential backoff and full jitter until a total
deadline, so either party may start first. "Not up yet" (UNAVAILABLE, RESOURCE_EXHAUSTED, a
handshake that failed) is retried; an answer that refuses (session or roles differ, wrong
certificate name) is final at once, with the peer's reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from openfl_like.core.errors import ConnectionFailedError, OpenflLikeError, ResourceExhaustedError
from openfl_like.core.logging import get_logger
from openfl_like.core.vertical import Hello
from openfl_like.transport.retry import RetryPolicy
from openfl_like.vertical.link import PeerLink

_log = get_logger(__name__)

INITIAL_BACKOFF_S = 0.05
MAX_BACKOFF_S = 2.0
ATTEMPT_MAX_S = 10.0


def connect_with_backoff(
    link: PeerLink,
    hello: Callable[[], Hello],
    *,
    me: str,
    peer_desc: str,
    timeout_s: float,
    stopping: threading.Event,
    closed: Callable[[], BaseException],
    wake: threading.Event | None = None,
    refused: Callable[[], OpenflLikeError | None] = lambda: None,
) -> tuple[int, float]:
    """Connect; returns (attempts, seconds taken). ``stopping`` set (a shutdown) ends the
    waiting with ``closed()``; ``refused()`` returning an error (our own server refused the
    peer's Connect: the disagreement holds both ways) ends it with that error. ``wake``, when
    given, is set by either, so a backoff wait ends at once."""
    wake = wake or stopping
    policy = RetryPolicy(initial_backoff=INITIAL_BACKOFF_S, max_backoff=MAX_BACKOFF_S,
                         total_seconds=timeout_s)
    start = time.monotonic()
    deadline = start + timeout_s
    for attempts, wait in enumerate(policy.waits(), start=1):
        remaining = deadline - time.monotonic()
        try:
            link.connect(hello(), min(max(remaining, 0.05), ATTEMPT_MAX_S))
            return attempts, time.monotonic() - start
        except (ConnectionFailedError, ResourceExhaustedError) as error:
            last = error
        except OpenflLikeError as error:  # an answer: the peer refused
            _log.error("%s refused the connection of %s: %s", peer_desc, me, error)
            raise with_context(error, f"{peer_desc} refused {me}") from None
        _give_up_if_told(stopping, closed, refused)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ConnectionFailedError(
                f"{me} could not connect to {peer_desc} within {timeout_s:.1f} s "
                f"({attempts} attempts): {last}")
        _log.log(logging.INFO if attempts == 1 else logging.DEBUG,
                 "connect to %s failed (%s); retrying for up to %.1f s", peer_desc, last,
                 timeout_s)
        if wake.wait(min(wait, remaining)):
            _give_up_if_told(stopping, closed, refused)
    raise AssertionError("unreachable")  # pragma: no cover - waits() never ends


def _give_up_if_told(stopping: threading.Event, closed: Callable[[], BaseException],
                     refused: Callable[[], OpenflLikeError | None]) -> None:
    error = refused()
    if error is not None:
        _log.error("%s", error)
        raise error
    if stopping.is_set():
        raise closed()


def with_context(error: OpenflLikeError, context: str) -> OpenflLikeError:
    """The same kind of error, its message prefixed with ``context`` (the error itself when
    its class takes other arguments)."""
    if context in error.message:
        return error
    try:
        return type(error)(f"{context}: {error.message}")
    except TypeError:
        return error
