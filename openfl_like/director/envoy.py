"""The envoy: a data owner's long-running agent next to its data.

At start it loads the site's data and checks it against the envoy's contract (refusing to start
when it does not fit), registers the dataset with the director once, applies decisions the
operator recorded while it was down, and opens its operator socket. Then three threads work:

- the heartbeat reports the running and awaiting experiments every period the director asks
  for (and at once when they change);
- the poll loop long-polls the director (``wait_experiment``; no sleep between polls, only a
  backoff after errors that outlasted the client's own retries; after such an outage it
  registers again). A new experiment is downloaded and handed to an ``ExperimentRun``; a
  CANCEL broadcast stops that experiment's collaborator; SHUTDOWN is logged (the loop simply
  reconnects later); an experiment already running or awaiting approval is ignored;
- the operator socket answers approve / reject / status (envoy_approvals).

Each experiment runs in its own ``ExperimentRun`` thread with its own collaborator child, so
several run at once. ``run(stop)`` returns once ``stop`` is set and every child has ended.

It talks to the director only through ``EnvoyDirectorPort``; ``app.envoy`` wires the gRPC client.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from openfl_like.core.errors import (
    AuthError,
    ConfigError,
    DataError,
    NotFoundError,
    OpenflLikeError,
    PermissionDeniedError,
    PlanMismatchError,
)
from openfl_like.core.experiments import Broadcast, BroadcastKind, ShardInfo
from openfl_like.core.ids import check_name
from openfl_like.core.logging import get_logger
from openfl_like.data.contract_check import check_dataset
from openfl_like.data.local import load_local_dataset
from openfl_like.director.envoy_approvals import (
    Decision,
    DecisionRecord,
    OperatorSocket,
    read_decision,
    write_decision,
)
from openfl_like.director.envoy_experiment import (
    FETCH_FAILED,
    INVALID_EXPERIMENT,
    ExperimentRun,
    RunState,
)
from openfl_like.director.envoy_feedback import FeedbackChannel
from openfl_like.director.envoy_runs import (
    CommandBuilder,
    LaunchSpec,
    default_collaborator_command,
)
from openfl_like.director.ports import EnvoyDirectorPort
from openfl_like.plan.contract import contract_to_dict
from openfl_like.plan.envoy_config import EnvoyConfig
from openfl_like.plan.local_data import load_local_data_spec
from openfl_like.plan.registry import is_object_reference

log = get_logger(__name__)

FATAL_ERRORS = (AuthError, PermissionDeniedError, PlanMismatchError)


def check_envoy_data(config: EnvoyConfig) -> dict[str, int]:
    """Load the site's data as ``config.data_file`` describes and hold it to the contract;
    the sample counts by split. DataError/PlanError name the file and the mismatch."""
    spec = load_local_data_spec(config.data_file)
    if is_object_reference(spec.loader):
        raise ConfigError(f"{config.data_file}: loader {spec.loader!r}: custom loaders are not "
                          "supported by the envoy; use one of the built-in loaders")
    try:
        dataset = load_local_dataset(spec.loader, spec.params, contract=config.contract)
        check_dataset(dataset, config.contract)
    except DataError as exc:
        raise DataError(f"envoy {config.name}: the data does not fit the contract: "
                        f"{exc.message}") from None
    return {"train": dataset.num_train, "valid": dataset.num_valid}


class Envoy:
    """The envoy agent (module docstring)."""

    def __init__(
        self,
        name: str,
        config: EnvoyConfig,
        port: EnvoyDirectorPort,
        *,
        pki_dir: Path,
        collaborator_command: CommandBuilder = default_collaborator_command,
        clock: Callable[[], float] = time.time,
        poll_seconds: float = 30.0,
        heartbeat_seconds: float = 10.0,
        grace_seconds: float = 30.0,
        max_backoff_seconds: float = 30.0,
        env: Mapping[str, str] | None = None,
        sample_counts: Mapping[str, int] | None = None,
    ) -> None:
        self.name = check_name(name, "envoy name")
        self.config = config
        self.port = port
        self.pki_dir = Path(pki_dir)
        self._command = collaborator_command
        self._clock = clock
        self.poll_seconds = poll_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.grace_seconds = grace_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self._env = env
        self._lock = threading.Lock()
        self._runs: dict[str, ExperimentRun] = {}
        self._channels: dict[str, FeedbackChannel] = {}  # of the runs still here
        self._tally = {"finished": 0, "feedback_dropped": 0}  # since start, for /metrics
        self._beat = threading.Event()  # wakes the heartbeat early (state change, stop)
        self._stop = threading.Event()
        self._done = threading.Event()
        self._fatal: OpenflLikeError | None = None
        self._socket: OperatorSocket | None = None
        # Counts of a data check the caller already made (else run() makes it).
        self.sample_counts: dict[str, int] = dict(sample_counts or {})
        self._checked = sample_counts is not None
        self.registered = False

    # -- public ----------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Start, work until ``stop`` is set (or a fatal refusal), then stop every child."""
        self._stop = stop
        self._done.clear()
        try:
            if not self._checked:
                self.sample_counts = check_envoy_data(self.config)
            self.config.experiments_dir.mkdir(parents=True, exist_ok=True)
            try:
                self._register()
            except FATAL_ERRORS:
                raise
            except OpenflLikeError as exc:  # the poll loop registers once the director answers
                log.warning("envoy %s: cannot register yet: %s", self.name, exc)
            self._socket = OperatorSocket(self.config.socket_path, self.handle_command).start()
            self._restore_decisions()
            threads = [threading.Thread(target=self._heartbeat_loop, daemon=True,
                                        name=f"{self.name}-heartbeat"),
                       threading.Thread(target=self._poll_loop, daemon=True,
                                        name=f"{self.name}-poll")]
            for thread in threads:
                thread.start()
            log.info("envoy %s: director %s:%d (%s); waiting for experiments",
                     self.name, self.config.director.host, self.config.director.port,
                     ", ".join(f"{k} {v}" for k, v in self.sample_counts.items()))
            stop.wait()
            self._shutdown()
            for thread in threads:
                thread.join(1.0)  # the poll may sit in a long-poll: the app closes the client
        finally:
            if self._socket is not None:
                self._socket.close()
                self._socket = None
            self._done.set()
        if self._fatal is not None:
            raise self._fatal

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM the running collaborators, wait for them, return (``run`` returns too)."""
        self._stop.set()
        self._beat.set()
        self._done.wait(timeout)

    def status(self) -> dict[str, Any]:
        with self._lock:
            runs = list(self._runs.values())
        return {
            "envoy": self.name,
            "director": f"{self.config.director.host}:{self.config.director.port}",
            "registered": self.registered,
            "sample_counts": dict(self.sample_counts),
            "running": sorted(r.name for r in runs if r.state is RunState.RUNNING),
            "awaiting_approval": sorted(r.name for r in runs
                                        if r.state is RunState.AWAITING_APPROVAL),
        }

    def tally(self) -> dict[str, int]:
        """Runs whose collaborator exited 0, and feedback items given up, since start."""
        with self._lock:
            return dict(self._tally)

    def handle_command(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """One operator command (envoy_approvals): approve, reject or status."""
        if request.get("status"):
            return {"ok": True, **self.status()}
        if "approve" in request:
            experiment, decision, reason = str(request["approve"]), Decision.APPROVED, ""
        elif "reject" in request:
            experiment, decision = str(request["reject"]), Decision.REJECTED
            reason = str(request.get("reason", ""))
        else:
            raise ConfigError("unknown command (expected approve, reject or status)")
        with self._lock:
            run = self._runs.get(experiment)
        if run is None:
            raise NotFoundError(f"unknown experiment {experiment!r}: envoy {self.name} has "
                                "nothing awaiting approval under that name")
        if run.state is not RunState.AWAITING_APPROVAL:
            raise ConfigError(f"experiment {experiment!r} is not awaiting approval "
                              f"({run.state.value})")
        run.decide(decision, reason)
        return {"ok": True, "experiment": experiment, "decision": decision.value}

    # -- start-up --------------------------------------------------------------------------------

    def _register(self) -> None:
        shard = ShardInfo(contract=contract_to_dict(self.config.contract),
                          sample_counts=dict(self.sample_counts),
                          description=self.config.description)
        message = self.port.update_shard_info(shard)
        self.registered = True
        if message:
            log.info("envoy %s: director says: %s", self.name, message)

    def _restore_decisions(self) -> None:
        """Experiments left pending wait again; decisions recorded while down are applied."""
        for folder in sorted(p for p in self.config.experiments_dir.iterdir() if p.is_dir()):
            try:
                record = read_decision(folder)
            except ConfigError as exc:
                log.warning("envoy %s: %s", self.name, exc)
                continue
            if record is None or (record.applied and record.decision is not Decision.PENDING):
                continue
            if not (folder / "plan").is_dir():
                log.warning("envoy %s: %s: no plan left; ignored", self.name, folder.name)
                continue
            if record.decision is Decision.PENDING:
                record = self._effective(folder.name, folder, record)
            log.info("envoy %s: %s: recorded decision %s applied at start", self.name,
                     folder.name, record.decision.value)
            self._launch(folder.name, record)

    # -- threads ---------------------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        period = self.heartbeat_seconds
        while not self._stop.is_set():
            self._beat.clear()
            status = self.status()
            try:
                reply = self.port.update_envoy_status(status["running"],
                                                      status["awaiting_approval"])
                if reply and reply > 0:
                    period = float(reply)
            except OpenflLikeError as exc:
                log.warning("envoy %s: heartbeat failed: %s", self.name, exc)
            self._beat.wait(period)

    def _poll_loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                if failures or not self.registered:
                    self._register()  # the director may have restarted without us
                assignment = self.port.wait_experiment(self.poll_seconds)
            except FATAL_ERRORS as exc:
                log.error("envoy %s: refused by the director: %s", self.name, exc)
                self._fatal = exc
                self._stop.set()
                return
            except Exception as exc:
                if self._stop.is_set():
                    return
                failures += 1
                backoff = min(self.max_backoff_seconds, 2.0 ** min(failures, 8) / 4)
                log.warning("envoy %s: director unreachable (%s); again in %.1f s", self.name,
                            exc, backoff)
                self._stop.wait(backoff)
                continue
            failures = 0
            for message in assignment.messages:
                self._on_broadcast(message)
            if assignment.experiment and not self._stop.is_set():
                self._offer(assignment.experiment)

    def _on_broadcast(self, message: Broadcast) -> None:
        if message.kind is BroadcastKind.CANCEL:
            with self._lock:
                run = self._runs.get(message.experiment)
            if run is not None:
                run.cancel(message.text)
        elif message.kind is BroadcastKind.SHUTDOWN:
            log.warning("envoy %s: the director is shutting down%s; will reconnect", self.name,
                        f": {message.text}" if message.text else "")
        else:
            log.info("envoy %s: director notice: %s", self.name, message.text)

    # -- experiments -----------------------------------------------------------------------------

    def _offer(self, experiment: str) -> None:
        try:
            check_name(experiment, "experiment name")
        except ConfigError as exc:
            self._report(experiment, INVALID_EXPERIMENT, exc.message)
            return
        with self._lock:
            if experiment in self._runs:
                log.debug("envoy %s: %s offered again: already here", self.name, experiment)
                return
        folder = self.config.experiment_dir(experiment)
        try:
            self._fetch(experiment, folder)
            record = read_decision(folder)
        except OpenflLikeError as exc:
            self._report(experiment, FETCH_FAILED, f"cannot fetch the experiment: {exc}")
            return
        record = self._effective(experiment, folder, record)
        log.info("envoy %s: experiment %s received (%s)", self.name, experiment,
                 "awaiting approval" if record.decision is Decision.PENDING
                 else record.decision.value)
        self._launch(experiment, record)

    def _effective(self, experiment: str, folder: Path, record: DecisionRecord | None
                   ) -> DecisionRecord:
        """The decision that holds for an offer (written down when it changes): a recorded one
        not acted on yet; an earlier offer's approval or rejection; else pending (review) or
        approved."""
        review = self.config.review_experiments
        if record is not None and record.decision is not Decision.PENDING:
            if not record.applied:
                return record
            fresh = DecisionRecord(experiment, record.decision, record.reason,
                                   time=self._clock())
        elif record is not None and review:
            return record
        else:
            fresh = DecisionRecord(experiment,
                                   Decision.PENDING if review else Decision.APPROVED,
                                   time=self._clock())
        write_decision(folder, fresh)
        return fresh

    def _fetch(self, experiment: str, folder: Path) -> None:
        """The package into ``folder/plan`` (downloaded aside, then swapped in)."""
        partial = folder / "plan.partial"
        shutil.rmtree(partial, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            self.port.get_experiment_data(experiment, partial,
                                          max_bytes=self.config.max_experiment_bytes)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        shutil.rmtree(folder / "plan", ignore_errors=True)
        partial.rename(folder / "plan")

    def _launch(self, experiment: str, record: DecisionRecord) -> None:
        folder = self.config.experiment_dir(experiment)
        spec = LaunchSpec(envoy=self.name, experiment=experiment, plan_dir=folder / "plan",
                          pki_dir=self.pki_dir, data_file=self.config.data_file,
                          workspace=folder / "work")
        with self._lock:
            if experiment in self._runs or self._stop.is_set():
                return
            run = ExperimentRun(
                spec, port=self.port, command=self._command, experiment_dir=folder,
                feedback=self._feedback, on_change=self._changed, decision=record.decision,
                reason=record.reason, grace_seconds=self.grace_seconds, env=self._env,
            )
            self._runs[experiment] = run
        run.start()
        self._beat.set()

    def _feedback(self, experiment: str) -> FeedbackChannel:
        channel = FeedbackChannel(experiment, self.port.send_feedback, clock=self._clock)
        with self._lock:
            self._channels[experiment] = channel
        return channel

    def _changed(self, run: ExperimentRun) -> None:
        if run.state is RunState.ENDED:
            with self._lock:
                if self._runs.get(run.name) is run:
                    del self._runs[run.name]
                    channel = self._channels.pop(run.name, None)
                    self._tally["finished"] += run.exit_code == 0
                    self._tally["feedback_dropped"] += channel.dropped if channel else 0
        self._beat.set()

    def _report(self, experiment: str, code: int, description: str) -> None:
        log.warning("envoy %s: %s: %s", self.name, experiment, description)
        try:
            self.port.set_experiment_failed(experiment, code, description, [])
        except OpenflLikeError as exc:
            log.warning("envoy %s: could not report it: %s", self.name, exc)

    def _shutdown(self) -> None:
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            run.stop()
        for run in runs:
            if not run.join(self.grace_seconds + 5.0):
                log.warning("envoy %s: %s did not end in time", self.name, run.name)
        self._beat.set()
