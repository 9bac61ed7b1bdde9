"""Plain, transport-free messages exchanged between federation logic and the wire layer.

The gRPC servicers translate protobuf to these and back; the federation runtime sees only these.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

# Tag carried by tensors of the global (aggregated) model; the only kind a collaborator may fetch.
AGGREGATED_TAG = "aggregated"


@dataclass(frozen=True)
class Header:
    """Who sends, to whom, in which federation. On every request and response."""

    sender: str
    receiver: str
    federation_uuid: str
    single_col_cert_common_name: str = ""


@dataclass(frozen=True)
class NamedTensor:
    """One tensor with its identity; ``array`` keeps its dtype and shape exactly."""

    name: str
    array: np.ndarray
    round_number: int = 0
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class TensorStream:
    """One incoming tensor whose bytes are still arriving: its layout, then its data in pieces.

    Lets a receiver write an upload straight to disk holding about one chunk, not one tensor.
    ``chunks`` yields views of little-endian raw bytes, each a whole number of elements (the
    transport re-aligns pieces that split an element), ``nbytes`` in total; the transport has
    already checked that ``nbytes`` is ``dtype.itemsize x prod(shape)`` and within its limits,
    and raises ``ProtocolError`` from ``chunks`` when the stream is truncated or overlong. The
    views are valid only until the next one is requested.
    """

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    nbytes: int
    chunks: Iterator[memoryview]
    round_number: int = 0
    tags: tuple[str, ...] = ()


class TaskKind(str, enum.Enum):
    TRAIN = "train"
    VALIDATE_GLOBAL = "aggregated_model_validation"
    VALIDATE_LOCAL = "locally_tuned_model_validation"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class TaskSpec:
    """One unit of work for one collaborator in one round."""

    name: str
    kind: TaskKind
    round_number: int
    params: Mapping[str, float | int | str] = field(default_factory=dict)


class PollStatus(str, enum.Enum):
    WORK = "work"  # tasks are attached
    WAIT = "wait"  # nothing yet; ask again (the server already held the call for a while)
    DONE = "done"  # the federation has ended; the collaborator should exit
    FAILED = "failed"  # the federation ended as failed (``reason``); exit non-zero

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class TasksReply:
    status: PollStatus
    round_number: int
    tasks: tuple[TaskSpec, ...] = ()
    reason: str = ""
    # The global model of ``round_number`` when the transport sent it along (small models).
    model: tuple[NamedTensor, ...] = ()


@dataclass(frozen=True)
class ResultKey:
    """Idempotency key of a result: a retry with the same key is recognised, not counted twice."""

    collaborator: str
    round_number: int
    task_name: str

    def __str__(self) -> str:
        return f"{self.collaborator}/round-{self.round_number}/{self.task_name}"


@dataclass(frozen=True)
class TaskResult:
    """Metadata of a task's result; its tensors travel separately as a stream."""

    key: ResultKey
    data_size: int
    metrics: Mapping[str, float] = field(default_factory=dict)
    # Metrics-only results of the same collaborator and round sent along with this one (one
    # upload per round instead of one per task).
    also: tuple[TaskResult, ...] = ()


@dataclass(frozen=True)
class ResultAck:
    accepted: bool
    duplicate: bool = False
    message: str = ""


@dataclass(frozen=True)
class HandshakeReply:
    """Answer to a successful handshake: where the federation stands."""

    round_number: int
    rounds_total: int
    done: bool = False
    failed: str = ""  # why the federation failed ('' unless it did)


@dataclass(frozen=True)
class HeartbeatReply:
    round_number: int
    done: bool = False
    failed: str = ""
