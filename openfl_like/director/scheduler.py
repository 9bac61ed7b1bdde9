"""Runs experiments: starts queued ones in submission order while slots are free, follows their
aggregators, and records how each ends.

One scheduler thread does every launch (it is long-lived, which the launcher's
parent-death signal needs) and sleeps on a condition between them: a submission, an ending
experiment or a stop wakes it. Every state change goes through ``transition``, a
compare-and-set under one lock, so a cancel racing a launch or an exit is decided once.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any

from openfl_like.core.errors import OpenflLikeError
from openfl_like.core.experiments import EventKind, ExperimentState
from openfl_like.core.logging import get_logger
from openfl_like.director.events import EventLog
from openfl_like.director.experiment_plan import ExperimentPaths, write_experiment_plan
from openfl_like.director.launcher import (
    AggregatorHandle,
    LaunchCallbacks,
    Launcher,
    LaunchSpec,
)
from openfl_like.director.package import MODEL_FILES
from openfl_like.director.registry import ExperimentRecord, Registry
from openfl_like.plan.director_config import DirectorSettings
from openfl_like.plan.load import PLAN_FILE, _read_yaml

log = get_logger(__name__)

FINAL_METRICS = "final_metrics.json"  # what an aggregator writes last (app.common.Workspace)

ACTIVE = (ExperimentState.STARTING, ExperimentState.RUNNING)
LINE_LIMIT = 2000  # characters of one stored log line
LISTENING_MARK = "listening on"


def _bindable(host: str, port: int) -> bool:
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)
    except OSError:
        return False
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        try:
            sock.bind(address)
        except OSError:
            return False
    return True


class ExperimentRunner:
    def __init__(self, settings: DirectorSettings, registry: Registry, events: EventLog, *,
                 launcher: Launcher, pki_dir: Any, clock: Callable[[], float],
                 on_started: Callable[[ExperimentRecord], None],
                 port_free: Callable[[str, int], bool] = _bindable) -> None:
        self.settings = settings
        self.registry = registry
        self.events = events
        self.launcher = launcher
        self.pki_dir = pki_dir
        self.clock = clock
        self.on_started = on_started
        self.port_free = port_free
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._handles: dict[str, AggregatorHandle] = {}
        self._outcome: dict[str, dict[str, Any]] = {}  # what the aggregator said at the end
        self._stopping = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="director-scheduler",
                                        daemon=True)
        self._thread.start()

    def stop(self, grace: float) -> None:
        """Stop scheduling; SIGTERM every aggregator (they save their state) and wait."""
        with self._cond:
            self._stopping = True
            handles = list(self._handles.values())
            self._cond.notify_all()
        for handle in handles:
            handle.stop(grace)
        if self._thread is not None:
            self._thread.join(grace)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def paths(self, name: str) -> ExperimentPaths:
        return ExperimentPaths.of(self.settings.workspace, name)

    # ------------------------------------------------------------------------------ states
    def transition(self, name: str, state: ExperimentState, reason: str = "", *,
                   only_from: tuple[ExperimentState, ...] | None = None,
                   **fields: Any) -> bool:
        """Set ``state`` (with its STATUS event) unless the experiment is final already or not
        in ``only_from``; wakes its followers. False when nothing changed."""
        with self._lock:
            current = self.registry.experiment(name).state
            if current.is_final and state is not ExperimentState.REMOVED:
                return False
            if only_from is not None and current not in only_from:
                return False
            now = self.clock()
            if state is ExperimentState.STARTING:
                fields.setdefault("started", now)
            if state.is_final:
                fields.setdefault("ended", now)
            text = f"{state.value}: {reason}" if reason else state.value
            self.registry.update_experiment(name, state=state, reason=reason, event_time=now,
                                            event_text=text, **fields)
        self.events.wake(name)
        if state.is_final or state is ExperimentState.QUEUED:
            self.wake()
        return True

    def stop_aggregator(self, name: str) -> None:
        """Stop an experiment's aggregator in the background (the RPC that asked returns)."""
        with self._lock:
            handle = self._handles.get(name)
        if handle is not None:
            threading.Thread(target=handle.stop, name=f"stop-{name}", daemon=True).start()

    def running_count(self) -> int:
        return len(self.registry.experiments(states=ACTIVE))

    # ------------------------------------------------------------------------------ scheduling
    def _run(self) -> None:
        self._recover()
        while True:
            with self._cond:
                while not self._stopping and self._next_queued() is None:
                    self._cond.wait()
                if self._stopping:
                    return
                record = self._next_queued()
            if record is not None:
                self._launch(record, recovering=False)

    def _next_queued(self) -> ExperimentRecord | None:
        if self.running_count() >= self.settings.max_running_experiments:
            return None
        queued = self.registry.experiments(states=(ExperimentState.QUEUED,))
        return queued[0] if queued else None

    def _recover(self) -> None:
        """Relaunch what was starting or running when the director stopped: same port and
        workspace, so the aggregator resumes its saved state and envoys reconnect."""
        for record in self.registry.experiments(states=ACTIVE):
            with self._lock:
                if self._stopping:
                    return
            if self._finished_meanwhile(record):
                continue
            log.info("experiment %s: relaunching its aggregator on port %d", record.name,
                     record.port)
            self.events.append(record.name, time=self.clock(), kind=EventKind.LOG,
                               source="director", text="director restarted: relaunching the "
                               f"aggregator on port {record.port}")
            self._launch(record, recovering=True)

    def _finished_meanwhile(self, record: ExperimentRecord) -> bool:
        """The aggregator finished and exported (final_metrics.json) but the director died
        before it heard: record it FINISHED instead of relaunching a finished federation."""
        final = self.paths(record.name).output_dir / FINAL_METRICS
        try:
            metrics = json.loads(final.read_text())
        except (OSError, ValueError):
            return False
        if not isinstance(metrics, dict):
            return False
        numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
        self.registry.update_experiment(record.name, final_metrics=numbers)
        self.events.append(record.name, time=self.clock(), kind=EventKind.METRICS,
                           source="aggregator", task="final", metrics=numbers,
                           round_number=int(numbers.get("rounds", 0)))
        return self.transition(record.name, ExperimentState.FINISHED,
                               "finished while the director was down")

    def _free_port(self) -> int:
        first, last = self.settings.aggregator_ports
        taken = {r.port for r in self.registry.experiments(states=ACTIVE)}
        for port in range(first, last + 1):
            if port not in taken and self.port_free(self.settings.aggregator_host, port):
                return port
        raise OpenflLikeError(f"no free aggregator port in {first}-{last}")

    def _launch(self, record: ExperimentRecord, *, recovering: bool) -> None:
        name = record.name
        paths = self.paths(name)
        try:
            port = record.port if recovering else self._prepare(record, paths)
            if port is None:
                return  # cancelled meanwhile
            spec = LaunchSpec(experiment=name, plan_dir=paths.plan_dir,
                              workspace=paths.workspace, port=port, pki_dir=self.pki_dir)
            with self._lock:
                if self._stopping:
                    return
                self._outcome[name] = {}
                self._handles[name] = self.launcher.launch(spec, self._callbacks(name))
                cancelled = self.registry.experiment(name).state.is_final
        except Exception as exc:
            log.error("experiment %s: cannot start its aggregator: %s", name, exc)
            self.transition(name, ExperimentState.FAILED, f"cannot start the aggregator: {exc}")
            return
        if cancelled:
            self.stop_aggregator(name)
        elif not recovering:
            self.on_started(self.registry.experiment(name))

    def _prepare(self, record: ExperimentRecord, paths: ExperimentPaths) -> int | None:
        """Port, plan folder, STARTING (None when it was cancelled meanwhile)."""
        port = self._free_port()
        model = next((paths.package_dir / m for m in MODEL_FILES
                      if (paths.package_dir / m).is_file()), None)
        plan = write_experiment_plan(
            paths, self._plan_doc(record), kind=record.kind, aggregator_name=self.settings.name,
            host=self.settings.aggregator_host, port=port, envoys=record.envoys,
            model_source=model, test_data=self.settings.test_data)
        summary = dict(record.summary)
        summary.update(rounds=plan.aggregator.rounds_to_train,
                       quorum=plan.stragglers.min_collaborators if plan.stragglers.enabled
                       else len(plan.collaborators))
        if not self.transition(name := record.name, ExperimentState.STARTING,
                               f"aggregator on port {port}", only_from=(ExperimentState.QUEUED,),
                               port=port, summary=summary,
                               federation_uuid=plan.federation_uuid):
            log.info("experiment %s was cancelled before its aggregator started", name)
            return None
        return port

    def _plan_doc(self, record: ExperimentRecord) -> Mapping[str, Any]:
        doc = _read_yaml(self.paths(record.name).package_dir, PLAN_FILE)
        assert isinstance(doc, dict)  # checked at submission
        return doc

    # ------------------------------------------------------------------------------ callbacks
    def _callbacks(self, name: str) -> LaunchCallbacks:
        return LaunchCallbacks(
            on_line=lambda line: self._on_line(name, line),
            on_event=lambda event: self._on_event(name, event),
            on_exit=lambda code, last: self._on_exit(name, code, last),
        )

    def _on_line(self, name: str, line: str) -> None:
        self.events.append(name, time=self.clock(), kind=EventKind.LOG, source="aggregator",
                           text=line[:LINE_LIMIT])
        if LISTENING_MARK in line:
            self.transition(name, ExperimentState.RUNNING, only_from=(ExperimentState.STARTING,))

    def _on_event(self, name: str, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        now = self.clock()
        if kind == "listening":
            self.transition(name, ExperimentState.RUNNING, only_from=(ExperimentState.STARTING,))
        elif kind == "round":
            self._on_round(name, event, now)
        elif kind in ("final", "failed", "stopped"):
            with self._lock:
                self._outcome.setdefault(name, {})[str(kind)] = event
            if kind == "final":
                metrics = {k: v for k, v in (event.get("metrics") or {}).items()
                           if isinstance(v, (int, float))}
                self.registry.update_experiment(name, final_metrics=metrics)
                self.events.append(name, time=now, kind=EventKind.METRICS, source="aggregator",
                                   task="final", metrics=metrics,
                                   round_number=int(metrics.get("rounds", 0)))

    def _on_round(self, name: str, record: Mapping[str, Any], now: float) -> None:
        """A closed round's aggregated metrics, one event per task, timed when the aggregator
        closed the round (so an experimenter can see how late it arrives)."""
        round_number = int(record.get("round", 0))
        closed_at = record.get("closed_at")
        if isinstance(closed_at, (int, float)) and 0 < closed_at <= now:
            now = float(closed_at)
        metrics = record.get("metrics") or {}
        for task, values in sorted(metrics.items()):
            scalars = {k: float(v) for k, v in (values or {}).items()
                       if isinstance(v, (int, float))}
            self.events.append(name, time=now, kind=EventKind.METRICS, source="aggregator",
                               round_number=round_number, task=str(task), metrics=scalars)
        progress = {k: record.get(k) for k in ("round", "kind", "closed_by", "collaborators",
                                                 "missing", "metrics", "per_collaborator",
                                                 "dropped") if k in record}
        self.registry.update_experiment(name, progress=progress)

    def _on_exit(self, name: str, code: int, last: tuple[str, ...]) -> None:
        with self._lock:
            self._handles.pop(name, None)
            outcome = self._outcome.pop(name, {})
            stopping = self._stopping
        if stopping:
            return  # the director is stopping: the aggregator saved its state; relaunched later
        if code == 0 and "final" in outcome:
            self.transition(name, ExperimentState.FINISHED)
            return
        if "failed" in outcome:
            reason = str(outcome["failed"].get("reason", "the federation failed"))
        elif code == 0:
            reason = "the aggregator stopped before the experiment finished"
        else:
            reason = f"the aggregator exited with code {code}"
        tail = " | ".join(line for line in last[-5:] if line.strip())
        with contextlib.suppress(OpenflLikeError):
            self.transition(name, ExperimentState.FAILED,
                            f"{reason}{': ' + tail if tail else ''}")
