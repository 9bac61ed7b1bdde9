"""What the director's gRPC server needs from the logic behind it, as a typing Protocol.

The director logic (``openfl_like.director``) satisfies it structurally; the transport never
imports it. Every method receives the caller's name as authenticated by the servicer (the
certificate's CN, already checked against the header and the role of the RPC). Methods raise
``openfl_like.core.errors`` exceptions, which the servicer maps to gRPC status codes:
PermissionDeniedError (e.g. another experimenter's experiment), NotFoundError, ProtocolError
(INVALID_ARGUMENT), ResourceLimitError (an oversize package), PlanError/ConfigError (a plan
that no envoy matches, with the reason), FederationError.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from openfl_like.core.experiments import (
    EnvoyAssignment,
    ExperimentEvent,
    FeedbackItem,
    IncomingFile,
    OutgoingFile,
    ShardInfo,
    Submission,
)
from openfl_like.core.ids import Role
from openfl_like.core.waiting import Wakeup


class DirectorHandler(Protocol):
    # -- who may call ------------------------------------------------------------------------

    def is_authorized(self, name: str, role: Role) -> bool:
        """True when ``name`` may use the director in ``role`` (ENVOY or EXPERIMENTER)."""
        ...

    # -- envoys ------------------------------------------------------------------------------

    def update_shard_info(self, envoy: str, shard: ShardInfo) -> str:
        """Register or update the envoy's dataset; returns a short message."""
        ...

    def update_envoy_status(
        self, envoy: str, running: Sequence[str], awaiting_approval: Sequence[str]
    ) -> float:
        """Heartbeat; returns the heartbeat period in seconds."""
        ...

    def wait_experiment(
        self, envoy: str, wait_seconds: float, *, wakeup: Wakeup
    ) -> EnvoyAssignment:
        """Long-poll: block on ``wakeup`` up to ``wait_seconds`` until there is an experiment
        for this envoy or a broadcast; the transport cancels ``wakeup`` when the call ends."""
        ...

    def get_experiment_data(self, envoy: str, experiment: str) -> Sequence[OutgoingFile]:
        """The package files of an experiment this envoy was chosen for (else PermissionDenied)."""
        ...

    def set_experiment_failed(
        self, envoy: str, experiment: str, code: int, description: str,
        last_log_lines: Sequence[str],
    ) -> None: ...

    def experiment_feedback(
        self, envoy: str, experiment: str, items: Sequence[FeedbackItem]
    ) -> int:
        """Store items not seen before (by seq); return the highest seq held for this envoy."""
        ...

    # -- experimenters -----------------------------------------------------------------------

    def set_new_experiment(
        self, experimenter: str, submission: Submission, files: Iterator[IncomingFile]
    ) -> str:
        """Receive, check and queue a package; returns the experiment's name."""
        ...

    def list_experiments(self, experimenter: str) -> Mapping[str, Any]: ...

    def describe_experiment(self, experimenter: str, experiment: str) -> Mapping[str, Any]: ...

    def experiment_status(self, experimenter: str, experiment: str) -> Mapping[str, Any]: ...

    def dataset_info(self, experimenter: str) -> Mapping[str, Any]: ...

    def envoys(self, experimenter: str) -> Mapping[str, Any]: ...

    def metric_stream(
        self, experimenter: str, experiment: str, from_seq: int, *, wakeup: Wakeup
    ) -> Iterable[ExperimentEvent]:
        """Events from ``from_seq`` on, waiting on ``wakeup`` for new ones; ends after the
        experiment's last event, or when ``wakeup`` is cancelled (the client went away)."""
        ...

    def trained_model(self, experimenter: str, experiment: str, which: str) -> OutgoingFile: ...

    def remove_experiment(self, experimenter: str, experiment: str) -> Mapping[str, Any]: ...

    def cancel_experiment(
        self, experimenter: str, experiment: str, reason: str
    ) -> Mapping[str, Any]: ...
