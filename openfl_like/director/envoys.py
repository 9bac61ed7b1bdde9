"""The envoy side of the director: heartbeats, per-envoy experiment states, offers, long-polls.

An envoy's ``wait_experiment`` returns at once when an active experiment chosen for it is not
yet running there (by its last status report) and was not offered to it in the last two
heartbeat periods, or when broadcasts are waiting for it; otherwise it parks on its own
``Wakeup`` until an offer or a broadcast wakes it, the wait passes, or the call ends.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from openfl_like.core.errors import NotFoundError, PermissionDeniedError
from openfl_like.core.experiments import EnvoyAssignment, OutgoingFile
from openfl_like.core.waiting import Wakeup
from openfl_like.director.broadcasts import Broadcasts
from openfl_like.director.registry import (
    ENVOY_AWAITING,
    ENVOY_DONE,
    ENVOY_FAILED,
    ENVOY_OFFERED,
    ENVOY_REJECTED,
    ENVOY_RUNNING,
    ExperimentRecord,
    Registry,
)
from openfl_like.director.scheduler import ACTIVE, ExperimentRunner
from openfl_like.plan.director_config import DirectorSettings
from openfl_like.plan.load import COLS_FILE, DATA_FILE, PLAN_FILE

# An envoy in one of these states for an experiment is not offered it again.
NOT_OFFERED = (ENVOY_RUNNING, ENVOY_AWAITING, ENVOY_FAILED, ENVOY_REJECTED, ENVOY_DONE)


def outgoing_file(path: Path) -> OutgoingFile:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return OutgoingFile(path=path.name, size=path.stat().st_size, sha256=digest.hexdigest(),
                        source=path)


class EnvoyDesk:
    """Mixed into ``Director``; uses its registry, settings, broadcasts, clock and runner."""

    registry: Registry
    settings: DirectorSettings
    broadcasts: Broadcasts
    clock: Callable[[], float]
    runner: ExperimentRunner

    def __init__(self) -> None:
        self._desk_lock = threading.Lock()
        self._waiters: dict[str, set[Wakeup]] = {}
        self._offered: dict[tuple[str, str], float] = {}  # (experiment, envoy) -> when

    # ------------------------------------------------------------------------------ waking
    def _wake_envoys(self, names: Sequence[str]) -> None:
        with self._desk_lock:
            wakeups = [w for n in names for w in self._waiters.get(n, ())]
        for wakeup in wakeups:
            wakeup.wake()

    def wake_all_envoys(self) -> None:
        with self._desk_lock:
            wakeups = [w for group in self._waiters.values() for w in group]
        for wakeup in wakeups:
            wakeup.wake()

    def envoy_state_changed(self, experiment: str) -> None:
        """Hook: an envoy's part in ``experiment`` changed (the Director wakes its streams)."""

    def _offer(self, record: ExperimentRecord) -> None:
        """An experiment started: wake its envoys' parked long-polls."""
        self._wake_envoys(record.envoys)

    # ------------------------------------------------------------------------------ RPCs
    def update_envoy_status(self, envoy: str, running: Sequence[str],
                            awaiting_approval: Sequence[str]) -> float:
        now = self.clock()
        if not self.registry.heartbeat(envoy, now):
            raise NotFoundError(f"envoy {envoy} is not registered: send its shard info first")
        states = self.registry.states_of_envoy(envoy)
        running_set, awaiting_set = set(running), set(awaiting_approval)
        # Active experiments it was chosen for, and ended ones it was still running: those get
        # "done" once it stops reporting them (its last feedback is in by then).
        names = {r.name for r in self.registry.experiments(states=ACTIVE) if envoy in r.envoys}
        names |= {n for n, state in states.items() if state in (ENVOY_RUNNING, ENVOY_AWAITING)}
        for name in sorted(names):
            before = states.get(name)
            if name in running_set:
                after = ENVOY_RUNNING
            elif name in awaiting_set:
                after = ENVOY_AWAITING
            elif before in (ENVOY_RUNNING, ENVOY_AWAITING):
                after = ENVOY_DONE  # it stopped without a failure report: its part is over
            else:
                continue
            if after != before:
                self.registry.set_envoy_state(name, envoy, after, now=now)
                self.envoy_state_changed(name)
        return self.settings.heartbeat_seconds

    def wait_experiment(self, envoy: str, wait_seconds: float, *,
                        wakeup: Wakeup) -> EnvoyAssignment:
        deadline = time.monotonic() + max(0.0, wait_seconds)
        with self._desk_lock:
            self._waiters.setdefault(envoy, set()).add(wakeup)
        try:
            while True:
                seen = wakeup.seq
                assignment = self._assignment(envoy)
                if assignment.experiment or assignment.messages or wakeup.cancelled:
                    return assignment
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return assignment
                wakeup.wait(seen, remaining)
        finally:
            with self._desk_lock:
                group = self._waiters.get(envoy)
                if group is not None:
                    group.discard(wakeup)
                    if not group:
                        del self._waiters[envoy]

    def _assignment(self, envoy: str) -> EnvoyAssignment:
        messages = self.broadcasts.take(envoy)
        now = self.clock()
        period = 2 * self.settings.heartbeat_seconds
        states = self.registry.states_of_envoy(envoy)
        with self._desk_lock:
            for record in self.registry.experiments(states=ACTIVE):
                if envoy not in record.envoys or states.get(record.name) in NOT_OFFERED:
                    continue
                offered = self._offered.get((record.name, envoy))
                if offered is not None and now - offered < period:
                    continue
                self._offered[(record.name, envoy)] = now
                break
            else:
                return EnvoyAssignment(messages=messages)
        self.registry.set_envoy_state(record.name, envoy, ENVOY_OFFERED, now=now)
        return EnvoyAssignment(experiment=record.name, messages=messages)

    def _chosen(self, envoy: str, experiment: str) -> ExperimentRecord:
        try:
            record = self.registry.experiment(experiment)
        except NotFoundError:
            raise PermissionDeniedError(f"experiment {experiment} is not one of envoy "
                                        f"{envoy}'s") from None
        if envoy not in record.envoys:
            raise PermissionDeniedError(f"experiment {experiment} is not one of envoy "
                                        f"{envoy}'s")
        return record

    def get_experiment_data(self, envoy: str, experiment: str) -> Sequence[OutgoingFile]:
        record = self._chosen(envoy, experiment)
        if not record.active:
            raise PermissionDeniedError(f"experiment {experiment} is {record.state.value}, "
                                        "not running")
        folder = self.runner.paths(experiment).plan_dir
        names = [PLAN_FILE, COLS_FILE, DATA_FILE]
        model = record.summary.get("model_file")
        if model:
            names.append(str(model))
        return [outgoing_file(folder / name) for name in names]

    def record_envoy_failure(self, record: ExperimentRecord, envoy: str, reason: str,
                             lines: Sequence[str], *, rejected: bool) -> None:
        self.registry.set_envoy_state(record.name, envoy,
                                      ENVOY_REJECTED if rejected else ENVOY_FAILED,
                                      now=self.clock(), reason=reason, last_lines=lines)
