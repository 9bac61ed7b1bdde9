"""What the envoy agent and the experimenter API need from a connection to the director.

``transport.director_client.DirectorClient`` satisfies both Protocols structurally (``app/``
passes it in); tests pass fakes. Calls raise ``openfl_like.core.errors`` exceptions; transient
network failures are retried inside the client (backoff, total deadline) before they surface as
``UnavailableError``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from openfl_like.core.experiments import (
    EnvoyAssignment,
    ExperimentEvent,
    ExperimentKind,
    FeedbackItem,
    ShardInfo,
)


class EnvoyDirectorPort(Protocol):
    def update_shard_info(self, shard: ShardInfo) -> str: ...

    def update_envoy_status(
        self, running: Sequence[str], awaiting_approval: Sequence[str]
    ) -> float:
        """Heartbeat; returns the period the director wants."""
        ...

    def wait_experiment(self, wait_seconds: float) -> EnvoyAssignment:
        """Long-poll; returns an empty assignment when ``wait_seconds`` pass with nothing."""
        ...

    def get_experiment_data(self, experiment: str, dest: Path, *, max_bytes: int) -> list[Path]:
        """Download the package into the folder ``dest`` (created); each file's sha256 and size
        are checked, names are plain file names; returns the files written."""
        ...

    def set_experiment_failed(
        self, experiment: str, code: int, description: str, last_log_lines: Sequence[str]
    ) -> None: ...

    def send_feedback(self, experiment: str, items: Sequence[FeedbackItem]) -> int:
        """Send a batch; returns the highest seq the director now holds for this envoy."""
        ...


class ExperimenterDirectorPort(Protocol):
    def submit(
        self, name: str, kind: ExperimentKind, files: Mapping[str, Path]
    ) -> str:
        """Stream the package (file name -> local path); returns the experiment's name."""
        ...

    def list_experiments(self) -> Mapping[str, Any]: ...

    def describe_experiment(self, experiment: str) -> Mapping[str, Any]: ...

    def experiment_status(self, experiment: str) -> Mapping[str, Any]: ...

    def dataset_info(self) -> Mapping[str, Any]: ...

    def envoys(self) -> Mapping[str, Any]: ...

    def metric_stream(self, experiment: str, from_seq: int = 1) -> Iterator[ExperimentEvent]:
        """Events in order from ``from_seq``; reconnects on its own after a broken stream,
        resuming after the last event it yielded; ends when the experiment has ended."""
        ...

    def trained_model(self, experiment: str, which: str, dest: Path) -> Path:
        """Download the best or last model to the file ``dest`` (atomically); returns it."""
        ...

    def remove_experiment(self, experiment: str) -> Mapping[str, Any]: ...

    def cancel_experiment(self, experiment: str, reason: str = "") -> Mapping[str, Any]: ...
