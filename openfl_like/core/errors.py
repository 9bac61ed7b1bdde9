"""One error vocabulary for the whole project, translated at each edge.

Exception tree (catch the narrowest you can handle)::

    OpenflLikeError                 base; has a stable ``code`` and a one-line ``message``
    ├── PlanError                   a plan file is malformed or inconsistent
    ├── PkiError                    certificates, keys, CSRs, CRLs
    │   └── VerificationError       a certificate failed a named check (``check`` attribute)
    ├── AuthError                   who you are is unknown or unproven  -> UNAUTHENTICATED
    ├── PermissionDeniedError       known, but not allowed              -> PERMISSION_DENIED
    ├── PlanMismatchError           peers run different plans/federations -> FAILED_PRECONDITION
    ├── ProtocolError               malformed message / tensor          -> INVALID_ARGUMENT
    │   └── ResourceLimitError      over a configured size or count limit (same request, same
    │                               answer: never worth a retry)        -> INVALID_ARGUMENT
    ├── ResourceExhaustedError      busy now (per-peer call caps); retry -> RESOURCE_EXHAUSTED
    ├── NotFoundError               unknown tensor, round, experiment   -> NOT_FOUND
    ├── ConnectionFailedError       peer unreachable after retries      (client side)
    │   ├── UnavailableError        the server cannot serve now (disk full); retry -> UNAVAILABLE
    │   └── DeadlineExceededError   a call took too long; retry         -> DEADLINE_EXCEEDED
    ├── FederationError             the federation cannot go on (aggregation failed, quorum lost,
    │                               bad state)                          -> ABORTED
    └── ConfigError                 settings or environment overrides are invalid
        └── DataError               a site's local data does not load, or does not match the
                                    plan's data_contract (names the file and the mismatch)

The CLI turns any ``OpenflLikeError`` into one line on stderr and a non-zero exit code; the
transport maps them to gRPC status codes (``openfl_like.transport.status``).
"""

from __future__ import annotations


class OpenflLikeError(Exception):
    """Base of every error the project raises on purpose."""

    code: str = "error"
    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class PlanError(OpenflLikeError):
    code = "plan"
    exit_code = 2


class ConfigError(OpenflLikeError):
    code = "config"
    exit_code = 2


class PkiError(OpenflLikeError):
    code = "pki"
    exit_code = 3


class VerificationError(PkiError):
    """A certificate failed verification; ``check`` names which check."""

    code = "verify"

    def __init__(self, check: str, message: str) -> None:
        super().__init__(f"{check}: {message}")
        self.check = check


class AuthError(OpenflLikeError):
    code = "unauthenticated"
    exit_code = 4


class PermissionDeniedError(OpenflLikeError):
    code = "permission_denied"
    exit_code = 4


class PlanMismatchError(OpenflLikeError):
    code = "plan_mismatch"
    exit_code = 4


class ProtocolError(OpenflLikeError):
    code = "invalid_argument"
    exit_code = 5


class ResourceLimitError(ProtocolError):
    """A request over a configured limit: INVALID_ARGUMENT, not RESOURCE_EXHAUSTED, because
    clients retry RESOURCE_EXHAUSTED and the same oversized request would be refused forever."""

    code = "limit_exceeded"
    exit_code = 5


class RefusedError(ProtocolError):
    """A well-formed request the server will not take (a plan no envoy matches, a name already
    used, an experiment in the wrong state): INVALID_ARGUMENT with the reason; never retried."""

    code = "refused"
    exit_code = 5


class ResourceExhaustedError(OpenflLikeError):
    """The server is busy for this caller now (a per-peer cap); the same call may pass later."""

    code = "resource_exhausted"
    exit_code = 6


class NotFoundError(OpenflLikeError):
    code = "not_found"
    exit_code = 5


class ConnectionFailedError(OpenflLikeError):
    code = "unavailable"
    exit_code = 6


class UnavailableError(ConnectionFailedError):
    """The server cannot serve now (e.g. its disk is full); clients retry with backoff."""

    code = "unavailable"


class DeadlineExceededError(ConnectionFailedError):
    """A call did not complete in time (e.g. an upload whose first message never came)."""

    code = "deadline_exceeded"


class FederationError(OpenflLikeError):
    code = "federation"
    exit_code = 7


class DataError(ConfigError):
    """Local data that cannot be used: unreadable, empty, non-finite, or off the data contract.

    A ConfigError because it is fixed on the site (its files or its data description), never by
    retrying; every message names the file and the problem on one line.
    """

    code = "data"
