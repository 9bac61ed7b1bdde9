"""Transport-free messages of the two-party vertical communicator (``openfl_like.vertical``).

A vertical pair is a *leader* (holds the labels and the top model; decides which checkpoint and
which samples both parties use) and a *follower*. Each party runs a server and a client: what
one ``send``\\s arrives in the other's inbox, keyed by (name, step) for tensors and in order
(per sender sequence number) for control messages. The transport (``transport.vertical_*``)
turns these into protobuf and back; the communicator (``vertical/``) holds the logic.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from openfl_like.core.errors import ConfigError, ConnectionFailedError, DeadlineExceededError

PROTOCOL_VERSION = 1


class PartyRole(str, enum.Enum):
    """Which side of a vertical pair a process is."""

    LEADER = "leader"
    FOLLOWER = "follower"

    @property
    def peer(self) -> PartyRole:
        return PartyRole.FOLLOWER if self is PartyRole.LEADER else PartyRole.LEADER

    @classmethod
    def parse(cls, value: str) -> PartyRole:
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise ConfigError(
                f"unknown federal role {value!r} (expected leader or follower)"
            ) from None


@dataclass(frozen=True)
class Hello:
    """The first contact: both sides must agree on the session and on who is who.

    ``sender`` is the caller's participant name (the server checks it against the caller's
    certificate CN, and against the peer name it was configured with); ``step`` is the
    caller's current step, for the log only.
    """

    session_id: str
    sender: str
    sender_role: PartyRole
    receiver: str
    protocol_version: int = PROTOCOL_VERSION
    step: int = 0


@dataclass(frozen=True)
class StepTensor:
    """A named tensor of one step. The same name is matched step by step."""

    name: str
    step: int
    array: np.ndarray


class ControlKind(str, enum.Enum):
    CHECKPOINT_VERSION = "checkpoint_version"  # leader -> follower: restore this checkpoint
    READER_STATE = "reader_state"  # leader -> follower: data set `name` (re)starts here
    TERMINATE_READER = "terminate_reader"  # leader -> follower: data set `name` is finished
    GOODBYE = "goodbye"  # either way: the sender shut down; fail what waits on it


@dataclass(frozen=True)
class Control:
    """A control message. ``seq`` numbers the sender's control messages from 1, so a message
    re-sent after a lost reply is taken once."""

    seq: int
    kind: ControlKind
    name: str = ""
    version: int = 0
    block_id: int = 0
    sample_index: int = 0
    reason: str = ""


@dataclass(frozen=True)
class ReaderState:
    """Where reading of a named data set (re)starts: a block (e.g. an epoch or a file) and a
    sample index inside it."""

    name: str
    block_id: int
    sample_index: int


class PeerGoneError(ConnectionFailedError):
    """The peer shut down (it said goodbye) or cannot be reached: what waits on it fails."""

    code = "peer_gone"


class OperationTimeoutError(DeadlineExceededError):
    """A communicator operation ran longer than its timeout; names the operation, the tensor
    name and the step (DeadlineExceeded in EFL's words)."""

    code = "deadline_exceeded"


class CommunicatorClosedError(ConnectionFailedError):
    """The communicator was shut down; it cannot be used again."""

    code = "communicator_closed"
