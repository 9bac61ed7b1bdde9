"""What the transport tells an observer (e.g. ``transport.metrics``), as typed Protocols.

The servers and clients call these at the few places where something countable happens (bytes
on the wire, a refused call, a result's outcome, a parked long-poll, a retry); they never import
prometheus_client themselves, so the counting costs nothing when no observer is given.
Every argument that becomes a label is drawn from a small fixed set (status code names, check
names, RPC names, outcome names): never an error's text or a peer's address.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

# Result outcomes an aggregator server reports (``ServerObserver.result``).
ACCEPTED, DUPLICATE, REFUSED = "accepted", "duplicate", "refused"
# Transfer directions (``ServerObserver.transfer``), seen from the collaborator.
UPLOAD, DOWNLOAD = "upload", "download"


class ServerObserver(Protocol):
    """Told by an aggregator server about each call it serves."""

    def received(self, nbytes: int) -> None:
        """A request message of ``nbytes`` (serialized, as on the wire) arrived."""

    def sent(self, nbytes: int) -> None:
        """A response message of ``nbytes`` (serialized) leaves."""

    def refused(self, method: str, code: str, check: str) -> None:
        """``method`` ended with status ``code`` (a grpc.StatusCode name) because of ``check``
        (``transport.identity`` check names, else the error's ``code``)."""

    def result(self, outcome: str, reason: str = "") -> None:
        """An uploaded result was ``ACCEPTED``, a ``DUPLICATE`` or ``REFUSED`` (``reason``)."""

    def transfer(self, direction: str, nbytes: int, seconds: float) -> None:
        """One model transfer (``UPLOAD``/``DOWNLOAD``) of ``nbytes`` tensor bytes ended."""

    def polls_parked(self, delta: int) -> None:
        """A GetTasks long-poll was parked (+1) or returned (-1)."""


class ClientObserver(Protocol):
    """Told by an aggregator client about its traffic and its recoveries."""

    def sent(self, nbytes: int) -> None:
        """A request message of ``nbytes`` (serialized) is sent."""

    def received(self, nbytes: int) -> None:
        """A response message of ``nbytes`` (serialized) arrived."""

    def retry(self, code: str) -> None:
        """A call failed with status ``code`` (a grpc.StatusCode name) and is retried."""

    def reconnect(self) -> None:
        """The channel became READY again after it had been connected and lost."""


def counting_parser(parse: Callable[[bytes], Any] | None, count: Callable[[int], object]
                    ) -> Callable[[bytes], Any]:
    """A grpc deserializer that tells ``count`` each message's size (as on the wire) first;
    ``parse`` None (grpc hands the raw bytes on) stays a pass-through."""
    def deserialize(raw: bytes) -> Any:
        count(len(raw))
        return raw if parse is None else parse(raw)
    return deserialize


def counting_serializer(serialize: Callable[[Any], bytes], count: Callable[[int], object]
                        ) -> Callable[[Any], bytes]:
    """A grpc serializer that tells ``count`` each message's size."""
    def serialized(message: Any) -> bytes:
        data = serialize(message)
        count(len(data))
        return data
    return serialized
