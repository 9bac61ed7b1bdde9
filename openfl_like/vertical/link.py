"""The communicator's outbound wire to its peer, typed as Protocols so the logic is tested
without gRPC. ``transport.vertical_client.VerticalPeerClient`` implements :class:`PeerLink`.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from openfl_like.core.vertical import Control, Hello


class PendingSend(Protocol):
    """One send in flight, so the monitor can cancel it when it outlives its timeout."""

    def result(self) -> None:
        """Block until the peer acknowledged. Raises ``ConnectionFailedError`` subclasses
        (peer unreachable after retries, deadline), ``OperationCancelledError``-like
        ``ConnectionFailedError`` after :meth:`cancel`, or the peer's refusal
        (``RefusedError``, ``AuthError``, ``PermissionDeniedError``, ``PlanMismatchError``)."""

    def cancel(self) -> None:
        """Abandon the send; :meth:`result` then raises at once."""

    def done(self) -> bool: ...


class PeerLink(Protocol):
    def connect(self, hello: Hello, timeout_s: float) -> None:
        """One connection request. ``ConnectionFailedError`` when the peer is not up (the
        caller retries with backoff); ``PlanMismatchError``/``AuthError``/``PermissionDenied``
        when it answered and refused (fatal)."""

    def send_tensor(self, name: str, step: int, array: np.ndarray, timeout_s: float
                    ) -> PendingSend:
        """Start sending a named tensor of a step: one message when small, chunks when large.
        Retries UNAVAILABLE with backoff within ``timeout_s``."""

    def send_control(self, control: Control, timeout_s: float) -> PendingSend:
        """Start sending a control message (retried the same way)."""

    def close(self) -> None:
        """Close the channel; pending sends fail."""
