"""Project errors <-> gRPC status codes, both directions, in one place.

Server side: :func:`abort_with` / :func:`translate_errors` turn an ``OpenflLikeError`` raised by a
handler into the status code below with its one-line message; any other exception becomes
INTERNAL "internal error (see server log)" and is logged with its traceback on the server only.
Client side: :func:`error_from_rpc` turns a ``grpc.RpcError`` back into the same exception class.

==========================  =====================
error                       status code
==========================  =====================
AuthError                   UNAUTHENTICATED
PermissionDeniedError       PERMISSION_DENIED
PlanMismatchError           FAILED_PRECONDITION
ProtocolError               INVALID_ARGUMENT
ResourceLimitError          RESOURCE_EXHAUSTED
NotFoundError               NOT_FOUND
UnavailableError            UNAVAILABLE (clients retry it)
FederationError, others     FAILED_PRECONDITION
(unexpected exception)      INTERNAL
==========================  =====================
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import grpc

from openfl_like.core.errors import (
    AuthError,
    ConnectionFailedError,
    NotFoundError,
    OpenflLikeError,
    PermissionDeniedError,
    PlanMismatchError,
    ProtocolError,
    ResourceLimitError,
    UnavailableError,
)
from openfl_like.core.logging import get_logger

_log = get_logger(__name__)

INTERNAL_MESSAGE = "internal error (see server log)"

_TO_STATUS: tuple[tuple[type[OpenflLikeError], grpc.StatusCode], ...] = (
    (AuthError, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (PlanMismatchError, grpc.StatusCode.FAILED_PRECONDITION),
    (ProtocolError, grpc.StatusCode.INVALID_ARGUMENT),
    (ResourceLimitError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (UnavailableError, grpc.StatusCode.UNAVAILABLE),
)

# (UNAVAILABLE is retried by clients; when retries run out it is a ConnectionFailedError.)
_FROM_STATUS: dict[grpc.StatusCode, type[OpenflLikeError]] = {
    code: error for error, code in _TO_STATUS if code is not grpc.StatusCode.UNAVAILABLE
}

# Never retried: the answer will not change by asking again.
FATAL_CODES = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
    }
)
# Worth retrying with backoff: the peer may come back.
RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


def status_for(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and client-facing message for an exception raised while serving."""
    if isinstance(error, OpenflLikeError):
        for error_type, code in _TO_STATUS:
            if isinstance(error, error_type):
                return code, error.message
        return grpc.StatusCode.FAILED_PRECONDITION, error.message
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE


def abort_with(
    context: grpc.ServicerContext, error: BaseException, *, method: str = ""
) -> NoReturn:
    """Abort the call with the status for ``error``; log unexpected ones with traceback."""
    code, message = status_for(error)
    peer = context.peer()
    if code is grpc.StatusCode.INTERNAL:
        _log.error("%s from %s failed", method or "call", peer, exc_info=error)
    else:
        _log.info("%s from %s refused: %s %s", method or "call", peer, code.name, message)
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
    elif code in RETRYABLE_CODES:
        result = ConnectionFailedError(f"{prefix}{details}")
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
