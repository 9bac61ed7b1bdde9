"""A send in flight on the vertical link (``vertical.link.PendingSend``): its retries,
cancellation and timeout, apart from the client that issues its calls
(``transport.vertical_client``; see there for the fast path's blocking first attempt).

``result()`` retries UNAVAILABLE and RESOURCE_EXHAUSTED (not grpc's own message-size refusal)
with exponential backoff and jitter inside the send's timeout, in the thread that waits;
``cancel()`` wakes it at once (a grpc call in flight is cancelled, a backoff wait ends).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import grpc

from openfl_like.core.errors import ConnectionFailedError, OpenflLikeError
from openfl_like.core.logging import get_logger
from openfl_like.core.vertical import OperationTimeoutError
from openfl_like.protocol import vertical_pb2 as pb
from openfl_like.transport.aggregator_client import describe_failure
from openfl_like.transport.hostname import is_hostname_mismatch
from openfl_like.transport.vertical_settings import VerticalTransportSettings

_log = get_logger(__name__)

RETRIED_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
_OVERSIZE = ("larger than max", "message too large")  # grpc's own limit: never passes later


def is_oversize(details: str) -> bool:
    return any(marker in details.lower() for marker in _OVERSIZE)


class SendCancelledError(ConnectionFailedError):
    """A send abandoned by ``PendingSend.cancel()``, or by closing the link."""

    code = "cancelled"


class Link(Protocol):
    """What a pending send needs of its client (``VerticalPeerClient``)."""

    peer: str
    peer_addr: str
    settings: VerticalTransportSettings
    closed: bool

    def retryable(self, error: grpc.RpcError) -> bool: ...

    def error_of(self, error: grpc.RpcError, what: str) -> OpenflLikeError: ...

    def check_reply(self, reply: pb.PeerReply, what: str) -> None: ...


class PendingSend:
    """One send in flight (``vertical.link.PendingSend``); see the module docstring."""

    def __init__(self, client: Link, what: str, timeout_s: float,
                 issue: Callable[[float], grpc.Future],
                 blocking: Callable[[float], pb.PeerReply] | None = None) -> None:
        self._client = client
        self._what = what
        self._timeout_s = timeout_s
        self._deadline = time.monotonic() + timeout_s
        self._issue = issue
        self._lock = threading.Lock()
        self._outcome: tuple[OpenflLikeError | None] | None = None
        self._attempts = 1
        self._future: Any
        if blocking is None:
            self._cancelled = threading.Event()  # also wakes a backoff wait
            self._future = issue(max(timeout_s, 0.0))
            return
        # Decided sends (the usual outcome of a blocking attempt) cannot be cancelled any more:
        # they need no Event (~3 us a send on the per-step path).
        self._cancelled: threading.Event | _NeverSet = _NEVER_SET
        # The first attempt of a one-message send runs in this thread: grpc's blocking call
        # polls its own completion queue, where a future starts grpc's channel thread anew for
        # each call on an idle channel (~0.3 ms each time). The send is then already decided
        # when the caller gets it, unless it is to be retried (futures from then on).
        try:
            reply = blocking(max(timeout_s, 0.0))
        except grpc.RpcError as error:
            self._future = _Failed(error)
            if not self._will_retry(error):
                self._outcome = (self._final_error(error),)
            else:
                self._cancelled = threading.Event()
        except ValueError:  # grpc: the channel is closed
            self._future = _Failed(None)
            self._outcome = (self._cancelled_error(),)
        else:
            self._future = _Failed(None)
            try:
                client.check_reply(reply, what)
            except OpenflLikeError as error:
                self._outcome = (error,)
            else:
                self._outcome = (None,)

    def done(self) -> bool:
        if self._outcome is not None or self._cancelled.is_set():
            return True
        future = self._future
        if not future.done():
            return False
        if future.cancelled():
            return True
        error = future.exception()
        return not (isinstance(error, grpc.RpcError) and self._will_retry(error))

    def cancel(self) -> None:
        with self._lock:
            if self._outcome is not None:
                return
            future = self._future
            if future.done() and not future.cancelled() and future.exception() is None:
                return  # acknowledged already: stays a success
            self._cancelled.set()
        future.cancel()

    def result(self) -> None:
        while self._outcome is None:
            if self._cancelled.is_set():
                raise self._cancelled_error()
            future = self._future
            final: OpenflLikeError | None = None
            try:
                reply = future.result()
            except grpc.FutureCancelledError:
                final = self._cancelled_error()
            except grpc.RpcError as error:
                if self._cancelled.is_set():
                    final = self._cancelled_error()
                elif self._will_retry(error):
                    self._retry(future, error)
                    continue
                else:
                    final = self._final_error(error)
            else:
                try:
                    self._client.check_reply(reply, self._what)
                except OpenflLikeError as error:
                    final = error
            self._finish(final)
        self._raise_outcome()

    # -- internals -------------------------------------------------------------------------

    def _remaining(self) -> float:
        return self._deadline - time.monotonic()

    def _will_retry(self, error: grpc.RpcError) -> bool:
        return self._client.retryable(error) and self._remaining() > 0.001

    def _retry(self, failed: Any, error: grpc.RpcError) -> None:
        settings = self._client.settings
        cap = min(settings.retry_max_seconds,
                  settings.retry_initial_seconds * 2 ** (self._attempts - 1))
        wait = min(random.uniform(cap / 2, cap), max(self._remaining(), 0.0))  # noqa: S311
        _log.debug("%s: %s; retry %d in %.2f s", self._what, error.code(), self._attempts, wait)
        if self._cancelled.wait(wait):
            raise self._cancelled_error()
        with self._lock:
            if self._cancelled.is_set():
                raise self._cancelled_error()
            if self._future is failed:  # another waiter may have re-issued already
                remaining = self._remaining()
                if remaining <= 0:
                    self._outcome = (self._timed_out(error),)
                    return
                try:
                    self._future = self._issue(remaining)
                except ValueError:  # grpc: the channel was closed meanwhile
                    raise self._cancelled_error() from None
                self._attempts += 1

    def _final_error(self, error: grpc.RpcError) -> OpenflLikeError:
        code = error.code() if hasattr(error, "code") else None
        if code is grpc.StatusCode.DEADLINE_EXCEEDED or (
                code in RETRIED_CODES and self._remaining() <= 0.001
                and not is_hostname_mismatch(error)):
            return self._timed_out(error)
        return self._client.error_of(error, self._what)

    def _timed_out(self, last: grpc.RpcError) -> OpenflLikeError:
        client = self._client
        code = last.code() if hasattr(last, "code") else None
        why = "" if code is grpc.StatusCode.DEADLINE_EXCEEDED else \
            f"; last: {describe_failure(last, client.peer_addr, server=f'peer {client.peer}')}"
        return OperationTimeoutError(
            f"{self._what} timed out after {self._timeout_s:g} s (peer {client.peer} at "
            f"{client.peer_addr}, {self._attempts} attempt(s){why})")

    def _cancelled_error(self) -> SendCancelledError:
        if not self._cancelled.is_set():
            return SendCancelledError(f"{self._what}: the link to peer {self._client.peer} "
                                      f"was closed")
        return SendCancelledError(f"{self._what} cancelled (peer {self._client.peer} at "
                                  f"{self._client.peer_addr})")

    def _finish(self, error: OpenflLikeError | None) -> None:
        with self._lock:
            if self._outcome is None:
                self._outcome = (error,)

    def _raise_outcome(self) -> None:
        assert self._outcome is not None
        error = self._outcome[0]
        if error is not None:
            raise error


class _NeverSet:
    """The cancel flag of a send decided at once (``cancel()`` leaves those alone)."""

    @staticmethod
    def is_set() -> bool:
        return False


_NEVER_SET = _NeverSet()


class _Failed:
    """The future-like of a blocking first attempt (its error, or None once decided)."""

    def __init__(self, error: grpc.RpcError | None) -> None:
        self._error = error

    def done(self) -> bool:
        return True

    def cancelled(self) -> bool:
        return False

    def cancel(self) -> bool:
        return False

    def exception(self) -> BaseException | None:
        return self._error

    def result(self) -> pb.PeerReply:
        if self._error is not None:
            raise self._error
        raise AssertionError("a decided send has no result to wait for")  # pragma: no cover


__all__ = ["RETRIED_CODES", "Link", "PendingSend", "SendCancelledError", "is_oversize"]
