"""Plain, transport-free messages of the director workflow (envoys, experimenters, director).

The director's gRPC servicer translates ``director.proto`` to these and back; the director
logic and the envoy agent see only these. Descriptive replies (experiment lists, status,
envoys) are JSON-able mappings whose keys the director documents.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

# The file name of the trained model a director serves (GetTrainedModel ``which``).
MODEL_CHOICES: tuple[str, ...] = ("best", "last")


class ExperimentKind(str, enum.Enum):
    TRAIN = "train"
    VALIDATE = "validate"  # evaluate a given model at every matching envoy; no training round


class ExperimentState(str, enum.Enum):
    """Where an experiment stands. The last four are final."""

    QUEUED = "queued"              # accepted, waiting for a free slot or for envoys
    AWAITING_APPROVAL = "awaiting_approval"  # an envoy's operator must approve it
    STARTING = "starting"          # aggregator started, envoys told
    RUNNING = "running"            # the aggregator reports rounds
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REMOVED = "removed"            # its data was removed at the experimenter's request

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({ExperimentState.FINISHED, ExperimentState.FAILED,
                          ExperimentState.CANCELLED, ExperimentState.REMOVED})


class EventKind(str, enum.Enum):
    METRICS = "metrics"  # a round's metrics (aggregator) or a task's scalars (envoy)
    LOG = "log"          # one log line of the aggregator or an envoy
    STATUS = "status"    # the experiment changed state; ``text`` is the state and its reason


class FailureCode(enum.IntEnum):
    """``SetExperimentFailed`` codes an envoy sends besides its collaborator's exit code
    (0-255, or negative for a signal): above that range so the two never clash."""

    REJECTED = 1001            # the envoy's operator rejected the experiment
    FETCH_FAILED = 1002        # the package could not be downloaded or checked
    START_FAILED = 1003        # the collaborator could not be started
    INVALID_EXPERIMENT = 1004  # the package is not a runnable experiment at this envoy

    @classmethod
    def describe(cls, code: int) -> str:
        try:
            return cls(code).name.lower()
        except ValueError:
            return f"exit code {code}" if code >= 0 else f"signal {-code}"


class BroadcastKind(str, enum.Enum):
    CANCEL = "cancel"        # the experiment named in the message was cancelled
    SHUTDOWN = "shutdown"    # the director is shutting down
    NOTICE = "notice"        # anything else an operator wants every envoy to see


@dataclass(frozen=True)
class ShardInfo:
    """What an envoy registers: its data contract (``contract_to_dict`` form), counts, words."""

    contract: Mapping[str, Any]
    sample_counts: Mapping[str, int]
    description: str = ""


@dataclass(frozen=True)
class Broadcast:
    id: str
    kind: BroadcastKind
    experiment: str = ""
    text: str = ""


@dataclass(frozen=True)
class EnvoyAssignment:
    """A WaitExperiment reply: the next experiment ('' for none) and undelivered broadcasts."""

    experiment: str = ""
    messages: tuple[Broadcast, ...] = ()


@dataclass(frozen=True)
class FeedbackItem:
    """One log line or one task's scalars of an envoy, numbered per (experiment, envoy)."""

    seq: int
    time: float
    kind: EventKind  # LOG or METRICS
    text: str = ""
    round_number: int = 0
    task: str = ""
    scalars: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ExperimentEvent:
    """One entry of an experiment's event log; ``seq`` counts from 1 without gaps."""

    seq: int
    time: float
    kind: EventKind
    source: str  # "aggregator", "director" or an envoy's name
    round_number: int = 0
    task: str = ""
    metrics: Mapping[str, float] = field(default_factory=dict)
    text: str = ""


@dataclass(frozen=True)
class Submission:
    """The first message of SetNewExperiment: what is submitted, before any of its bytes."""

    name: str
    kind: ExperimentKind
    total_size: int


@dataclass(frozen=True)
class IncomingFile:
    """A file of a streamed package or model, whose bytes are still arriving.

    ``path`` is a plain file name (the transport refuses folders, '..' and empty names);
    ``chunks`` yields its bytes, ``size`` in total. The receiver checks ``sha256``.
    """

    path: str
    size: int
    sha256: str
    chunks: Iterator[bytes]


@dataclass(frozen=True)
class OutgoingFile:
    """A file the director serves (package file or trained model): read in chunks on demand."""

    path: str
    size: int
    sha256: str
    source: Any  # a pathlib.Path to read from
