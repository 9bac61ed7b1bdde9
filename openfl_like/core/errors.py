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
    ├── ResourceLimitError          over a configured size limit        -> RESOURCE_EXHAUSTED
    ├── NotFoundError               unknown tensor, round, experiment   -> NOT_FOUND
    ├── UnavailableError            the server cannot serve now (disk full, shutting down)
    │                                                                   -> UNAVAILABLE (retried)
    ├── ConnectionFailedError       peer unreachable after retries      (client side)
    ├── FederationError             the federation cannot go on (quorum lost, bad state)
    └── ConfigError                 settings or environment overrides are invalid

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


class ResourceLimitError(OpenflLikeError):
    code = "resource_exhausted"
    exit_code = 5


class NotFoundError(OpenflLikeError):
    code = "not_found"
    exit_code = 5


class UnavailableError(OpenflLikeError):
    """A passing condition on the server's side: the caller should retry with backoff."""

    code = "unavailable"
    exit_code = 6


class ConnectionFailedError(OpenflLikeError):
    code = "unavailable"
    exit_code = 6


class FederationError(OpenflLikeError):
    code = "federation"
    exit_code = 7
