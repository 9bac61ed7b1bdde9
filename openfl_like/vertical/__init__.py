"""Two-party vertical federated learning: a leader and a follower exchange named tensors step by
step over mutual TLS (:class:`Communicator`), agree on a checkpoint and on where their readers
start, and fail any operation that outlives its timeout.

``CommunicatorCallback`` (the Keras hook) is imported lazily, so importing this package does not
import TensorFlow.
"""

from __future__ import annotations

from typing import Any

from openfl_like.core.vertical import (
    CommunicatorClosedError,
    OperationTimeoutError,
    PartyRole,
    PeerGoneError,
    ReaderState,
)
from openfl_like.vertical.communicator import Communicator

__all__ = [
    "Communicator",
    "CommunicatorCallback",
    "CommunicatorClosedError",
    "OperationTimeoutError",
    "PartyRole",
    "PeerGoneError",
    "ReaderState",
]


def __getattr__(name: str) -> Any:
    # The one lazy gate to TensorFlow in this package (import-linter: ignore
    # "openfl_like.vertical -> openfl_like.vertical.keras_hook" in the TensorFlow contract).
    if name == "CommunicatorCallback":
        from openfl_like.vertical.keras_hook import CommunicatorCallback

        return CommunicatorCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
