"""The director: envoy registry, experiment intake, and what envoys and experimenters may ask.

``Director`` satisfies ``transport.director_handlers.DirectorHandler`` structurally; ``app/``
puts it behind ``DirectorGRPCServer``. Experiments run through ``scheduler.ExperimentRunner``;
everything durable is in ``registry.Registry`` (SQLite), so a restarted director picks up where
it stopped (``start()`` relaunches the aggregators of running experiments).

Envoys long-poll ``wait_experiment``: each parks on its own ``Wakeup``, woken by an offer or a
broadcast for it; nothing polls. ``set_experiment_failed`` with ``code == REJECTED_CODE`` means
the envoy's operator refused the experiment; any other code is a failure.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from openfl_like.core.errors import (
    ConfigError,
    NotFoundError,
    PermissionDeniedError,
    PlanError,
    RefusedError,
    ResourceLimitError,
)
from openfl_like.core.experiments import (
    MODEL_CHOICES,
    BroadcastKind,
    EventKind,
    ExperimentEvent,
    ExperimentKind,
    ExperimentState,
    FailureCode,
    FeedbackItem,
    IncomingFile,
    OutgoingFile,
    ShardInfo,
    Submission,
)
from openfl_like.core.ids import Role, check_name
from openfl_like.core.logging import get_logger
from openfl_like.core.waiting import Wakeup
from openfl_like.director import views
from openfl_like.director.broadcasts import Broadcasts
from openfl_like.director.envoys import EnvoyDesk, outgoing_file
from openfl_like.director.events import EventLog
from openfl_like.director.launcher import Launcher, SubprocessLauncher
from openfl_like.director.matching import EnvoyView, choose_envoys, required_envoys
from openfl_like.director.package import receive_and_check
from openfl_like.director.registry import (
    ENVOY_AWAITING,
    ENVOY_OFFERED,
    ENVOY_RUNNING,
    ExperimentRecord,
    Registry,
)
from openfl_like.director.scheduler import ExperimentRunner
from openfl_like.director.views import is_online
from openfl_like.plan.contract import contract_digest
from openfl_like.plan.director_config import DirectorConfig

log = get_logger(__name__)

REJECTED_CODE = FailureCode.REJECTED  # set_experiment_failed: the envoy's operator refused
STOP_GRACE_SECONDS = 15.0
# An envoy in one of these states may still send an ended experiment's last lines.
SETTLING = (ENVOY_OFFERED, ENVOY_RUNNING, ENVOY_AWAITING)
MAX_FEEDBACK_ITEMS = 1000  # per call: the rest is sent again (the reply says what is held)
TEXT_LIMIT = 2000  # characters of one stored line or description
TRAINED_MODELS = {"best": ("best_model.keras", "best_model.npz"),
                  "last": ("final_model.keras", "final_model.npz")}


class Director(EnvoyDesk):
    def __init__(self, config: DirectorConfig, *, pki_dir: Path,
                 launcher_factory: Callable[[], Launcher] = SubprocessLauncher,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.settings = config.director
        self.pki_dir = Path(pki_dir)
        self.clock = clock
        self.settings.workspace.mkdir(parents=True, exist_ok=True)
        self.registry = Registry(self.settings.workspace)
        self.events = EventLog(self.registry)
        self.broadcasts = Broadcasts(ttl_seconds=self.settings.broadcast_ttl_seconds,
                                     clock=clock)
        self.runner = ExperimentRunner(
            self.settings, self.registry, self.events, launcher=launcher_factory(),
            pki_dir=self.pki_dir, clock=clock, on_started=self._offer)
        self._receiving: set[str] = set()
        self._intake_lock = threading.Lock()
        super().__init__()

    # ------------------------------------------------------------------------------ lifecycle
    def start(self) -> Director:
        """Recover (relaunch running experiments' aggregators) and start scheduling."""
        self.runner.start()
        return self

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Tell envoys, stop every aggregator (each saves its state), close the registry."""
        self.broadcast(BroadcastKind.SHUTDOWN, "the director is shutting down")
        self.runner.stop(grace)
        self.registry.close()

    def broadcast(self, kind: BroadcastKind, text: str, experiment: str = "") -> None:
        self.broadcasts.add(kind, text, experiment)
        self.wake_all_envoys()

    # ------------------------------------------------------------------------------ who
    def is_authorized(self, name: str, role: Role) -> bool:
        if role is Role.ENVOY:
            allowed = self.settings.envoys
        elif role is Role.EXPERIMENTER:
            allowed = self.settings.experimenters
        else:
            return False
        return not allowed or name in allowed

    def _own(self, experimenter: str, experiment: str) -> ExperimentRecord:
        record = self.registry.experiment(experiment)
        if record.owner != experimenter:
            raise PermissionDeniedError(
                f"experiment {experiment} belongs to another experimenter")
        return record

    # ------------------------------------------------------------------------------ intake
    def set_new_experiment(self, experimenter: str, submission: Submission,
                           files: Iterator[IncomingFile]) -> str:
        """Check and queue a package. A refusal the experimenter can act on (a bad plan, no
        matching envoy, a taken name) is a RefusedError (INVALID_ARGUMENT) with the reason."""
        limit = self.settings.max_package_bytes
        if submission.total_size > limit:
            raise ResourceLimitError(f"package: {submission.total_size} bytes, over the "
                                     f"director's limit of {limit} bytes")
        with self._intake_lock:
            try:
                name = (str(check_name(submission.name, "experiment name")) if submission.name
                        else self._default_name(experimenter))
            except ConfigError as exc:
                raise RefusedError(exc.message) from None
            if name in self._receiving or self._exists(name):
                raise RefusedError(f"experiment {name!r} already exists on this director; "
                                   "choose another name")
            self._receiving.add(name)
        try:
            return self._intake(experimenter, name, ExperimentKind(submission.kind), files)
        except (PlanError, ConfigError) as exc:
            raise RefusedError(exc.message) from None
        finally:
            with self._intake_lock:
                self._receiving.discard(name)

    def _default_name(self, experimenter: str) -> str:
        """``<experimenter>-<n>``: the first n not taken (names stay unique per director)."""
        number = 1
        while (candidate := f"{experimenter}-{number}") in self._receiving or self._exists(
                candidate):
            number += 1
        return candidate

    def _exists(self, name: str) -> bool:
        try:
            self.registry.experiment(name)
        except NotFoundError:
            return False
        return True

    def _intake(self, experimenter: str, name: str, kind: ExperimentKind,
                files: Iterator[IncomingFile]) -> str:
        paths = self.runner.paths(name)
        staging = paths.root.parent / f".staging-{name}-{uuid.uuid4().hex[:8]}"
        package = receive_and_check(files, staging, kind=kind,
                                    max_bytes=self.settings.max_package_bytes)
        try:
            contract = package.plan.data_contract
            assert contract is not None  # check_package requires it
            needed = required_envoys(package.min_collaborators, package.stragglers_enabled)
            chosen = choose_envoys(contract, self._envoy_views(), needed=needed)
            if paths.root.exists():  # left by a crash before its registry row was written
                shutil.rmtree(paths.root)
            paths.root.mkdir(parents=True)
            staging.rename(paths.package_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        plan = package.plan
        summary = {
            "rounds": 0 if kind is ExperimentKind.VALIDATE else plan.aggregator.rounds_to_train,
            "tasks": [t.value for t in plan.tasks], "task_runner": plan.task_runner.name,
            "aggregation": plan.aggregation.name, "mode": plan.mode.name,
            "contract_digest": contract_digest(contract), "model_file": package.model_file,
            "model_sha256": package.sha256.get(package.model_file, ""),
            "min_collaborators": package.min_collaborators,
            "stragglers": package.stragglers_enabled,
        }
        self.registry.add_experiment(
            name=name, owner=experimenter, kind=kind, created=self.clock(), envoys=chosen,
            package_sha256=package.package_sha256, summary=summary,
            text=f"queued: {kind.value} experiment for {', '.join(chosen)}")
        log.info("experiment %s of %s queued for %s", name, experimenter, ", ".join(chosen))
        self.runner.wake()
        return name

    def _envoy_views(self) -> list[EnvoyView]:
        now = self.clock()
        hb = self.settings.heartbeat_seconds
        return [EnvoyView(e.name, e.shard.contract, views.is_online(e, now, hb))
                for e in self.registry.envoys() if self.is_authorized(e.name, Role.ENVOY)]

    # ------------------------------------------------------------------------------ experimenters
    def list_experiments(self, experimenter: str) -> Mapping[str, Any]:
        return views.experiment_list(self.registry.experiments(owner=experimenter))

    def describe_experiment(self, experimenter: str, experiment: str) -> Mapping[str, Any]:
        return views.experiment_description(self._own(experimenter, experiment))

    def experiment_status(self, experimenter: str, experiment: str) -> Mapping[str, Any]:
        record = self._own(experimenter, experiment)
        online = {v.name: v.online for v in self._envoy_views()}
        address = f"{self.settings.aggregator_host}:{record.port}"
        return views.experiment_status(record, self.registry.envoy_states(experiment), online,
                                       address)

    def _running_by_envoy(self) -> dict[str, list[str]]:
        active = self.registry.experiments(states=(ExperimentState.STARTING,
                                                   ExperimentState.RUNNING))
        return views.running_by_envoy({r.name: self.registry.envoy_states(r.name)
                                       for r in active})

    def envoys(self, experimenter: str) -> Mapping[str, Any]:
        return views.envoy_list(self.registry.envoys(), now=self.clock(),
                                heartbeat_seconds=self.settings.heartbeat_seconds,
                                running=self._running_by_envoy())

    def dataset_info(self, experimenter: str) -> Mapping[str, Any]:
        listing = self.envoys(experimenter)
        by_contract: dict[str, dict[str, Any]] = {}
        for envoy in listing["envoys"]:
            entry = by_contract.setdefault(envoy["contract_digest"], {
                "contract": envoy["contract"], "envoys": [], "online": [],
                "sample_counts": {}})
            entry["envoys"].append(envoy["name"])
            if envoy["online"]:
                entry["online"].append(envoy["name"])
            for split, count in envoy["sample_counts"].items():
                entry["sample_counts"][split] = entry["sample_counts"].get(split, 0) + count
        return {"datasets": by_contract, "envoys": listing["envoys"]}

    def metric_stream(self, experimenter: str, experiment: str, from_seq: int, *,
                      wakeup: Wakeup) -> Iterable[ExperimentEvent]:
        self._own(experimenter, experiment)  # refused before the stream starts

        return self.events.stream(experiment, from_seq, wakeup=wakeup,
                                  settled=lambda: self._settled_in(experiment))

    def _settled_in(self, experiment: str) -> float | None:
        """None while the experiment runs; once it ended, the seconds until its event log is
        complete: 0 when every chosen envoy's part is over (done, failed, rejected) or it is
        offline, else what is left of a grace of two heartbeat periods (plus one second) after
        the end, for the envoys' last feedback, which may trail the aggregator's end."""
        record = self.registry.experiment(experiment)
        if not record.state.is_final:
            return None
        now = self.clock()
        states = self.registry.envoy_states(experiment)
        online = {e.name: is_online(e, now, self.settings.heartbeat_seconds)
                  for e in self.registry.envoys()}
        pending = [name for name in record.envoys if online.get(name)
                   and name in states and states[name].state in SETTLING]
        if not pending or record.state is ExperimentState.REMOVED:
            return 0.0
        grace = 2 * self.settings.heartbeat_seconds + 1.0
        return max(0.0, (record.ended or now) + grace - now)

    def envoy_state_changed(self, experiment: str) -> None:
        self.events.wake(experiment)  # a stream waiting for the envoys to settle re-checks

    def trained_model(self, experimenter: str, experiment: str, which: str) -> OutgoingFile:
        if which not in MODEL_CHOICES:
            raise RefusedError(f"which: must be one of {', '.join(MODEL_CHOICES)} "
                               f"(got {which!r})")
        self._own(experimenter, experiment)
        folder = self.runner.paths(experiment).output_dir
        for file_name in TRAINED_MODELS[which]:
            if (folder / file_name).is_file():
                return outgoing_file(folder / file_name)
        raise NotFoundError(f"experiment {experiment}: no {which} model yet")

    def cancel_experiment(self, experimenter: str, experiment: str,
                          reason: str) -> Mapping[str, Any]:
        record = self._own(experimenter, experiment)
        why = reason or f"cancelled by {experimenter}"
        if self.runner.transition(experiment, ExperimentState.CANCELLED, why):
            self.runner.stop_aggregator(experiment)
            if record.active:
                self.broadcast(BroadcastKind.CANCEL, why, experiment)
        state = self.registry.experiment(experiment)
        return {"name": experiment, "state": state.state.value, "reason": state.reason}

    def remove_experiment(self, experimenter: str, experiment: str) -> Mapping[str, Any]:
        record = self._own(experimenter, experiment)
        if not record.state.is_final:
            raise RefusedError(f"experiment {experiment} is {record.state.value}: cancel it "
                               "before removing it")
        shutil.rmtree(self.runner.paths(experiment).root, ignore_errors=True)
        if record.state is not ExperimentState.REMOVED:
            self.runner.transition(experiment, ExperimentState.REMOVED,
                                   f"removed by {experimenter}")
        return {"name": experiment, "state": ExperimentState.REMOVED.value}

    # ------------------------------------------------------------------------------ envoy side
    def update_shard_info(self, envoy: str, shard: ShardInfo) -> str:
        new = self.registry.upsert_envoy(envoy, shard, self.clock())
        log.info("envoy %s %s its dataset", envoy, "registered" if new else "updated")
        return f"envoy {envoy} {'registered' if new else 'updated'}"

    def set_experiment_failed(self, envoy: str, experiment: str, code: int, description: str,
                              last_log_lines: Sequence[str]) -> None:
        record = self._chosen(envoy, experiment)
        lines = [line[:TEXT_LIMIT] for line in list(last_log_lines)[-50:]]
        text = description[:TEXT_LIMIT]
        rejected = code == REJECTED_CODE
        self.record_envoy_failure(record, envoy, text, lines, rejected=rejected)
        what = "rejected" if rejected else f"failed (code {code})"
        self.events.append(experiment, time=self.clock(), kind=EventKind.STATUS, source=envoy,
                           text=f"{envoy} {what}: {text}")
        if not record.active:
            return
        states = self.registry.envoy_states(experiment)
        usable = [n for n in record.envoys
                  if states.get(n) is None or states[n].state not in ("failed", "rejected")]
        quorum = int(record.summary.get("quorum") or len(record.envoys))
        if len(usable) < quorum:
            tail = " | ".join(lines[-5:])
            reason = (f"{envoy} {what}: {text}; {len(usable)} of the {quorum} envoys needed "
                      f"remain{': ' + tail if tail else ''}")
            if self.runner.transition(experiment, ExperimentState.FAILED, reason):
                self.runner.stop_aggregator(experiment)
                self.broadcast(BroadcastKind.CANCEL, reason, experiment)

    def experiment_feedback(self, envoy: str, experiment: str,
                            items: Sequence[FeedbackItem]) -> int:
        self._chosen(envoy, experiment)
        batch = sorted(items, key=lambda item: item.seq)[:MAX_FEEDBACK_ITEMS]
        last, new = self.registry.store_feedback(experiment, envoy, batch,
                                                 text_limit=TEXT_LIMIT)
        if new:
            self.events.wake(experiment)
        return last
