"""An in-memory DirectorHandler for transport tests: enough behaviour to prove the wire layer.

Long-polls and metric streams park on the transport's ``Wakeup`` exactly as the real director
must: read ``wakeup.seq`` under the lock, release it, then ``wakeup.wait(seq, ...)``.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openfl_like.core.errors import NotFoundError, PermissionDeniedError, ProtocolError
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


def outgoing(path: Path, name: str | None = None, sha256: str | None = None) -> OutgoingFile:
    data = path.read_bytes()
    return OutgoingFile(path=name or path.name, size=len(data),
                        sha256=sha256 or hashlib.sha256(data).hexdigest(), source=path)


@dataclass
class FakeDirector:
    envoy_names: set[str]
    experimenter_names: set[str]
    heartbeat_seconds: float = 5.0
    shards: dict[str, ShardInfo] = field(default_factory=dict)
    statuses: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)
    packages: dict[str, list[OutgoingFile]] = field(default_factory=dict)
    models: dict[tuple[str, str], OutgoingFile] = field(default_factory=dict)
    failures: list[tuple[str, str, int, str, list[str]]] = field(default_factory=list)
    feedback: dict[tuple[str, str], dict[int, FeedbackItem]] = field(default_factory=dict)
    feedback_batches: list[int] = field(default_factory=list)  # items per handler call
    submissions: dict[str, tuple[str, Submission, dict[str, bytes]]] = field(default_factory=dict)
    submit_calls: int = 0
    removed: list[str] = field(default_factory=list)
    cancelled: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._assignments: dict[str, EnvoyAssignment] = {}
        self._poll_wakeups: dict[str, Wakeup] = {}
        self.parked = threading.Event()  # a WaitExperiment is parked
        self.poll_cancelled = threading.Event()  # a parked poll saw its wakeup cancelled
        self._events: dict[str, list[ExperimentEvent]] = {}
        self._ended: set[str] = set()
        self._stream_wakeups: list[Wakeup] = []
        self.stream_ends: list[str] = []  # why each metric stream ended: "done" / "cancelled"

    # -- who may call ------------------------------------------------------------------------

    def is_authorized(self, name: str, role: Role) -> bool:
        if role is Role.ENVOY:
            return name in self.envoy_names
        return role is Role.EXPERIMENTER and name in self.experimenter_names

    # -- envoys ------------------------------------------------------------------------------

    def update_shard_info(self, envoy: str, shard: ShardInfo) -> str:
        self.shards[envoy] = shard
        return f"shard of {envoy} registered"

    def update_envoy_status(
        self, envoy: str, running: Sequence[str], awaiting_approval: Sequence[str]
    ) -> float:
        self.statuses[envoy] = (list(running), list(awaiting_approval))
        return self.heartbeat_seconds

    def assign(self, envoy: str, assignment: EnvoyAssignment) -> None:
        with self._lock:
            self._assignments[envoy] = assignment
            wakeup = self._poll_wakeups.get(envoy)
        if wakeup is not None:
            wakeup.wake()

    def wait_experiment(
        self, envoy: str, wait_seconds: float, *, wakeup: Wakeup
    ) -> EnvoyAssignment:
        deadline = time.monotonic() + wait_seconds
        with self._lock:
            self._poll_wakeups[envoy] = wakeup
        self.parked.set()
        try:
            while True:
                with self._lock:
                    if envoy in self._assignments:
                        return self._assignments.pop(envoy)
                    seen = wakeup.seq
                if wakeup.cancelled:
                    self.poll_cancelled.set()
                    return EnvoyAssignment()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return EnvoyAssignment()
                wakeup.wait(seen, remaining)
        finally:
            with self._lock:
                if self._poll_wakeups.get(envoy) is wakeup:
                    del self._poll_wakeups[envoy]
            self.parked.clear()

    def get_experiment_data(self, envoy: str, experiment: str) -> Sequence[OutgoingFile]:
        if experiment not in self.packages:
            raise NotFoundError(f"no experiment {experiment!r}")
        return self.packages[experiment]

    def set_experiment_failed(
        self, envoy: str, experiment: str, code: int, description: str,
        last_log_lines: Sequence[str],
    ) -> None:
        self.failures.append((envoy, experiment, code, description, list(last_log_lines)))

    def experiment_feedback(
        self, envoy: str, experiment: str, items: Sequence[FeedbackItem]
    ) -> int:
        held = self.feedback.setdefault((envoy, experiment), {})
        self.feedback_batches.append(len(items))
        for item in items:
            held.setdefault(item.seq, item)
        return max(held, default=0)

    # -- experimenters -----------------------------------------------------------------------

    def set_new_experiment(
        self, experimenter: str, submission: Submission, files: Iterator[IncomingFile]
    ) -> str:
        self.submit_calls += 1
        received: dict[str, bytes] = {}
        for file in files:
            data = b"".join(file.chunks)
            if hashlib.sha256(data).hexdigest() != file.sha256:
                raise ProtocolError(f"{file.path}: sha256 mismatch")
            received[file.path] = data
        self.submissions[submission.name] = (experimenter, submission, received)
        return submission.name

    def list_experiments(self, experimenter: str) -> Mapping[str, Any]:
        return {"experiments": sorted(n for n, s in self.submissions.items()
                                      if s[0] == experimenter)}

    def _own(self, experimenter: str, experiment: str) -> tuple[str, Submission, dict]:
        if experiment not in self.submissions:
            raise NotFoundError(f"no experiment {experiment!r}")
        entry = self.submissions[experiment]
        if entry[0] != experimenter:
            raise PermissionDeniedError(f"{experiment!r} is not an experiment of {experimenter}")
        return entry

    def describe_experiment(self, experimenter: str, experiment: str) -> Mapping[str, Any]:
        _, submission, files = self._own(experimenter, experiment)
        return {"name": experiment, "kind": submission.kind, "files": sorted(files)}

    def experiment_status(self, experimenter: str, experiment: str) -> Mapping[str, Any]:
        self._own(experimenter, experiment)
        return {"name": experiment, "state": "queued"}

    def dataset_info(self, experimenter: str) -> Mapping[str, Any]:
        return {"envoys": {name: dict(s.sample_counts) for name, s in self.shards.items()}}

    def envoys(self, experimenter: str) -> Mapping[str, Any]:
        return {"envoys": sorted(self.envoy_names)}

    def publish(self, experiment: str, event: ExperimentEvent) -> None:
        with self._lock:
            self._events.setdefault(experiment, []).append(event)
            wakeups = list(self._stream_wakeups)
        for wakeup in wakeups:
            wakeup.wake()

    def finish(self, experiment: str) -> None:
        with self._lock:
            self._ended.add(experiment)
            wakeups = list(self._stream_wakeups)
        for wakeup in wakeups:
            wakeup.wake()

    def metric_stream(
        self, experimenter: str, experiment: str, from_seq: int, *, wakeup: Wakeup
    ) -> Iterator[ExperimentEvent]:
        with self._lock:
            self._stream_wakeups.append(wakeup)
        try:
            next_seq = from_seq
            while True:
                with self._lock:
                    pending = [e for e in self._events.get(experiment, []) if e.seq >= next_seq]
                    ended = experiment in self._ended
                    seen = wakeup.seq
                for event in pending:
                    yield event
                    next_seq = event.seq + 1
                if pending:
                    continue
                if ended:
                    self.stream_ends.append("done")
                    return
                if wakeup.cancelled:
                    self.stream_ends.append("cancelled")
                    return
                wakeup.wait(seen, None)
        finally:
            with self._lock:
                self._stream_wakeups.remove(wakeup)

    def trained_model(self, experimenter: str, experiment: str, which: str) -> OutgoingFile:
        if (experiment, which) not in self.models:
            raise NotFoundError(f"no {which} model of {experiment!r}")
        return self.models[(experiment, which)]

    def remove_experiment(self, experimenter: str, experiment: str) -> Mapping[str, Any]:
        self._own(experimenter, experiment)
        self.removed.append(experiment)
        return {"name": experiment, "state": "removed"}

    def cancel_experiment(
        self, experimenter: str, experiment: str, reason: str
    ) -> Mapping[str, Any]:
        self._own(experimenter, experiment)
        self.cancelled.append((experiment, reason))
        return {"name": experiment, "state": "cancelled", "reason": reason}
