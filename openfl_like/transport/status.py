"""Project errors <-> gRPC status codes, both directions, in one place.

Server side: :func:`abort_with` / :func:`translate_errors` turn an ``OpenflLikeError`` raised by a
handler into the status code below with its one-line message; any other exception becomes
INTERNAL "internal error (see server log)" and is logged with its traceback on the server only.
Client side: :func:`error_from_rpc` turns a ``grpc.RpcError`` back into the same exception class.

==========================  =====================  =========================================
error                       status code            client side
==========================  =====================  =========================================
AuthError                   UNAUTHENTICATED        fatal
PermissionDeniedError       PERMISSION_DENIED      fatal
PlanMismatchError           FAILED_PRECONDITION    fatal: only a plan mismatch uses this code
ProtocolError               INVALID_ARGUMENT       fatal (ResourceLimitError is one: a request
                                                   over a fixed limit never passes on retry)
NotFoundError               NOT_FOUND              fatal
FederationError             ABORTED                fatal: the federation failed, with its reason
ResourceExhaustedError      RESOURCE_EXHAUSTED     retried with backoff (a per-peer cap)
UnavailableError            UNAVAILABLE            retried with backoff (e.g. the disk is full)
DeadlineExceededError       DEADLINE_EXCEEDED      retried with backoff
other OpenflLikeError       INTERNAL, message kept fatal (a server-side config/PKI problem)
(unexpected exception)      INTERNAL, no details   fatal; traceback in the server log only
==========================  =====================  =========================================

Inbound, each code above becomes its error class again; UNAVAILABLE and DEADLINE_EXCEEDED are
``ConnectionFailedError`` subclasses, so code that catches "the aggregator is unreachable" also
catches a server that is up but cannot serve. gRPC's own RESOURCE_EXHAUSTED for an oversized
message is not retried (the same message stays oversized): see :func:`is_retryable`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import grpc

from openfl_like.core.errors import (
    AuthError,
    DeadlineExceededError,
    FederationError,
    NotFoundError,
    OpenflLikeError,
    PermissionDeniedError,
    PlanMismatchError,
    ProtocolError,
    ResourceExhaustedError,
    UnavailableError,
)
from openfl_like.core.logging import get_logger
from openfl_like.transport.refusals import RefusalLog

_log = get_logger(__name__)

INTERNAL_MESSAGE = "internal error (see server log)"

_TO_STATUS: tuple[tuple[type[OpenflLikeError], grpc.StatusCode], ...] = (
    (AuthError, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (PlanMismatchError, grpc.StatusCode.FAILED_PRECONDITION),
    (ProtocolError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (FederationError, grpc.StatusCode.ABORTED),
    (ResourceExhaustedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (UnavailableError, grpc.StatusCode.UNAVAILABLE),
    (DeadlineExceededError, grpc.StatusCode.DEADLINE_EXCEEDED),
)

_FROM_STATUS: dict[grpc.StatusCode, type[OpenflLikeError]] = {
    code: error for error, code in _TO_STATUS
}

# Never retried: the answer will not change by asking again.
FATAL_CODES = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
    }
)
# Worth retrying with backoff: the peer may come back, or have room again.
RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
# grpc's own RESOURCE_EXHAUSTED for a message over max_receive_message_length: not transient.
_OVERSIZE_MESSAGE = ("larger than max", "message too large")


def is_retryable(error: BaseException) -> bool:
    """True for an RPC error worth retrying with backoff (see the module docstring)."""
    if not isinstance(error, grpc.RpcError):
        return False
    code = _code_of(error)
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        details = _details_of(error).lower()
        return not any(marker in details for marker in _OVERSIZE_MESSAGE)
    return code in RETRYABLE_CODES


def status_for(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and client-facing message for an exception raised while serving."""
    if isinstance(error, OpenflLikeError):
        for error_type, code in _TO_STATUS:
            if isinstance(error, error_type):
                return code, error.message
        # A deliberate error with a human message, but no client's fault (config, PKI): never
        # FAILED_PRECONDITION, which clients read as a plan mismatch.
        return grpc.StatusCode.INTERNAL, error.message
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE


# A client's mistake or misbehaviour; the other refusals (busy, stopping, moved on) are normal.
_WARNING_CODES = frozenset({
    grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.ABORTED,
})
# Once per peer and reason with a count (transport.refusals): no flooding by a hostile client.
refusal_log = RefusalLog(_log)


def peer_label(context: grpc.ServicerContext) -> str:
    """The caller for a log line: its certificate's CN, else its address without the port."""
    with contextlib.suppress(Exception):
        names = context.auth_context().get("x509_common_name") or []
        if names:
            name = names[0]
            return name.decode(errors="replace") if isinstance(name, bytes) else str(name)
    address = context.peer() or "unknown peer"
    if address.startswith(("ipv4:", "ipv6:")):
        return address.split(":", 1)[1].rsplit(":", 1)[0]
    return address


def abort_with(
    context: grpc.ServicerContext, error: BaseException, *, method: str = ""
) -> NoReturn:
    """Abort the call with the status for ``error``; log unexpected ones with traceback,
    refusals through ``refusal_log``."""
    code, message = status_for(error)
    if code is grpc.StatusCode.INTERNAL:
        _log.error("%s from %s failed", method or "call", context.peer(), exc_info=error)
    else:
        level = logging.WARNING if code in _WARNING_CODES else logging.INFO
        refusal_log.refused(peer_label(context), code.name, message, method=method or "call",
                            level=level)
    context.abort(code, message)
    raise AssertionError("context.abort returned")  # pragma: no cover - abort always raises


@contextmanager
def translate_errors(context: grpc.ServicerContext, method: str) -> Iterator[None]:
    """Wrap a servicer body: any exception becomes the right status (see module docstring).

    The body must raise project errors rather than call ``context.abort`` itself (grpc's abort
    raises a bare ``Exception`` that would be caught here and reported as INTERNAL).
    """
    try:
        yield
    except Exception as error:
        abort_with(context, error, method=method)


def error_from_rpc(error: grpc.RpcError, *, what: str = "") -> OpenflLikeError:
    """The project error for a failed call, with the server's reason (client side)."""
    code = _code_of(error)
    details = _details_of(error) or (code.name if code else "unknown error")
    prefix = f"{what}: " if what else ""
    error_type = _FROM_STATUS.get(code) if code is not None else None
    if error_type is not None:
        result: OpenflLikeError = error_type(f"{prefix}{details}")
    else:
        result = OpenflLikeError(f"{prefix}{code.name if code else 'UNKNOWN'}: {details}")
    result.status_code = code  # type: ignore[attr-defined]  # the wire status, for callers/tests
    return result


def _code_of(error: grpc.RpcError) -> grpc.StatusCode | None:
    code = getattr(error, "code", None)
    return code() if callable(code) else None


def _details_of(error: grpc.RpcError) -> str:
    details = getattr(error, "details", None)
    text = details() if callable(details) else None
    return text or ""
