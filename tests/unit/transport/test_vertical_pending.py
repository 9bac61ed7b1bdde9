"""PendingSend without a network: decided fast path, retries within the timeout, cancel, close."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import grpc
import pytest

from openfl_like.core.errors import AuthError, OpenflLikeError
from openfl_like.core.vertical import OperationTimeoutError
from openfl_like.protocol import vertical_pb2 as pb
from openfl_like.transport.status import error_from_rpc
from openfl_like.transport.vertical_pending import RETRIED_CODES, PendingSend, SendCancelledError
from openfl_like.transport.vertical_settings import VerticalTransportSettings

OK = pb.PeerReply()


class Status(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str = "") -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class Call:
    """A grpc-future stand-in: decided at once, or when ``finish`` is called."""

    def __init__(self, outcome: object = None) -> None:
        self._outcome = outcome
        self._event = threading.Event()
        if outcome is not None:
            self._event.set()
        self.was_cancelled = False

    def finish(self, outcome: object) -> None:
        self._outcome = outcome
        self._event.set()

    def done(self) -> bool:
        return self._event.is_set()

    def cancelled(self) -> bool:
        return self.was_cancelled

    def cancel(self) -> bool:
        self.was_cancelled = True
        self._event.set()
        return True

    def exception(self) -> BaseException | None:
        return self._outcome if isinstance(self._outcome, BaseException) else None

    def result(self) -> pb.PeerReply:
        self._event.wait()
        if self.was_cancelled:
            raise grpc.FutureCancelledError()
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        return self._outcome  # type: ignore[return-value]


@dataclass
class Link:
    peer: str = "bank"
    peer_addr: str = "127.0.0.1:1"
    settings: VerticalTransportSettings = field(default_factory=lambda: VerticalTransportSettings(
        retry_initial_seconds=0.01, retry_max_seconds=0.02))
    closed: bool = False
    refuse_reply: OpenflLikeError | None = None

    def retryable(self, error: grpc.RpcError) -> bool:
        return error.code() in RETRIED_CODES and not self.closed

    def error_of(self, error: grpc.RpcError, what: str) -> OpenflLikeError:
        return error_from_rpc(error, what=what)

    def check_reply(self, reply: pb.PeerReply, what: str) -> None:
        if self.refuse_reply is not None:
            raise self.refuse_reply


def issuing(*outcomes: object) -> tuple[list[Call], object]:
    calls: list[Call] = []

    def issue(_remaining: float) -> Call:
        call = Call(outcomes[min(len(calls), len(outcomes) - 1)])
        calls.append(call)
        return call

    return calls, issue


def test_a_blocking_first_attempt_that_succeeds_is_decided_at_once() -> None:
    calls, issue = issuing(OK)
    pending = PendingSend(Link(), "send 'a' at step 1", 5.0, issue, lambda _t: OK)
    assert pending.done() and calls == []
    pending.cancel()  # acknowledged: stays a success
    pending.result()


def test_a_refusal_is_raised_as_its_project_error_without_retry() -> None:
    calls, issue = issuing(OK)
    pending = PendingSend(Link(), "send 'a' at step 1", 5.0, issue,
                          lambda _t: (_ for _ in ()).throw(Status(grpc.StatusCode.UNAUTHENTICATED,
                                                                  "forged")))
    assert pending.done()
    with pytest.raises(AuthError, match="send 'a' at step 1: forged"):
        pending.result()
    assert calls == []
    link = Link(refuse_reply=AuthError("reply from mallory"))
    with pytest.raises(AuthError, match="reply from mallory"):
        PendingSend(link, "x", 5.0, issue, lambda _t: OK).result()


def test_unavailable_is_retried_until_it_passes() -> None:
    calls, issue = issuing(Status(grpc.StatusCode.UNAVAILABLE, "down"), OK)
    pending = PendingSend(Link(), "send 'a' at step 1", 5.0, issue,
                          lambda _t: (_ for _ in ()).throw(Status(grpc.StatusCode.UNAVAILABLE)))
    assert not pending.done()  # to be retried
    pending.result()
    assert len(calls) == 2 and pending.done()


def test_retries_stop_at_the_timeout_with_an_operation_timeout() -> None:
    _, issue = issuing(Status(grpc.StatusCode.UNAVAILABLE, "connection refused"))
    started = time.monotonic()
    pending = PendingSend(Link(), "send 'g' at step 12", 0.1, issue)
    with pytest.raises(OperationTimeoutError,
                       match=r"send 'g' at step 12 timed out after 0.1 s \(peer bank at "
                             r"127.0.0.1:1, \d+ attempt\(s\); last: TCP connect"):
        pending.result()
    assert time.monotonic() - started < 1.0


def test_cancel_wakes_a_waiting_result_at_once() -> None:
    in_flight = Call()  # never answers
    pending = PendingSend(Link(), "send 'a' at step 3", 30.0, lambda _t: in_flight)
    assert not pending.done()
    threading.Timer(0.05, pending.cancel).start()
    started = time.monotonic()
    with pytest.raises(SendCancelledError, match="send 'a' at step 3 cancelled"):
        pending.result()
    assert time.monotonic() - started < 0.5 and in_flight.was_cancelled and pending.done()

