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

from openfl_like.core.errors import OpenflLikeError
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

    def on_refused(self, error: OpenflLikeError) -> None:
        """The server refused a Connect from the configured peer's certificate because the two
        parties disagree (session, roles, names, protocol version). The disagreement is the
        same both ways, so this party fails its own connect at once too, rather than retrying
        towards a peer that has already given up."""
