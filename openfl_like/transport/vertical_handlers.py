"""What a vertical party's gRPC server calls: the communicator's inbox, typed as a Protocol so
the transport never imports ``openfl_like.vertical``.

The server (``transport.vertical_server``) has already checked the caller's certificate (role
``party``, CN = the configured peer name), the header against it, and the session id and roles,
and has decoded and size-checked the payload. A handler method that refuses raises an
``OpenflLikeError`` (``RefusedError`` for a conflicting duplicate, ``ResourceExhaustedError``
when the inbox is full); the server turns it into a gRPC status with the reason.
"""

from __future__ import annotations

from typing import Protocol

from openfl_like.core.vertical import Control, Hello, StepTensor


class VerticalHandler(Protocol):
    def on_connect(self, hello: Hello) -> None:
        """The peer's first contact (and every retry of it). Raise ``PlanMismatchError`` with
        the difference when the session or roles disagree."""

    def on_tensor(self, tensor: StepTensor) -> None:
        """Keep the peer's tensor until ``recv(name)`` at its step asks for it. The same
        (name, step) again with the same bytes is a re-send and is accepted once."""

    def on_control(self, control: Control) -> None:
        """Queue a control message; a ``seq`` seen before is a re-send and is ignored."""
