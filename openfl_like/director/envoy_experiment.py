"""One experiment at an envoy, from its offer to its end, in a thread of its own.

The thread waits for the operator's decision when the experiment needs review, then starts the
collaborator child, forwards its output and task events as feedback, waits for it and tells the
director how it ended: nothing more on exit 0 (the aggregator reports the experiment's end), a
``set_experiment_failed`` with the exit code, a one-line reason and the last log lines
otherwise. A cancelled run, or one stopped because the envoy stops, is not reported as failed.
The same thread starts and waits for the child (see envoy_runs: PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from openfl_like.core.errors import OpenflLikeError
from openfl_like.core.experiments import FailureCode
from openfl_like.core.logging import get_logger
from openfl_like.director.envoy_approvals import (
    Decision,
    DecisionRecord,
    read_decision,
    write_decision,
)
from openfl_like.director.envoy_feedback import FeedbackChannel
from openfl_like.director.envoy_runs import (
    CollaboratorProcess,
    CommandBuilder,
    LaunchSpec,
    failure_description,
)
from openfl_like.director.ports import EnvoyDirectorPort

log = get_logger(__name__)

# set_experiment_failed codes beyond a collaborator's exit code (core.experiments.FailureCode)
REJECTED = FailureCode.REJECTED
FETCH_FAILED = FailureCode.FETCH_FAILED
START_FAILED = FailureCode.START_FAILED
INVALID_EXPERIMENT = FailureCode.INVALID_EXPERIMENT


class RunState(str, enum.Enum):
    AWAITING_APPROVAL = "awaiting_approval"
    RUNNING = "running"
    ENDED = "ended"


class ExperimentRun:
    """The life of one experiment at this envoy (module docstring)."""

    def __init__(
        self,
        spec: LaunchSpec,
        *,
        port: EnvoyDirectorPort,
        command: CommandBuilder,
        experiment_dir: Path,
        feedback: Callable[[str], FeedbackChannel],
        on_change: Callable[[ExperimentRun], None],
        decision: Decision,
        reason: str = "",
        grace_seconds: float = 30.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.spec = spec
        self.name = spec.experiment
        self._port = port
        self._command = command
        self._dir = experiment_dir
        self._feedback_factory = feedback
        self._on_change = on_change
        self._grace = grace_seconds
        self._env = env
        self._lock = threading.Lock()
        self._decided = threading.Event()
        awaiting = decision is Decision.PENDING
        self._decision: Decision | None = None if awaiting else decision
        self._reason = reason
        self._cancelled = False
        self._stopping = False
        self._process: CollaboratorProcess | None = None
        self.state = RunState.AWAITING_APPROVAL if awaiting else RunState.RUNNING
        self.exit_code: int | None = None
        if not awaiting:
            self._decided.set()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"experiment-{self.name}")

    def start(self) -> ExperimentRun:
        self._thread.start()
        return self

    # -- requests from other threads -----------------------------------------------------------

    def decide(self, decision: Decision, reason: str = "") -> None:
        """The operator's decision (persisted first, so a crash right after keeps it)."""
        with self._lock:
            if self._decided.is_set():
                return
            record = read_decision(self._dir) or DecisionRecord(self.name, Decision.PENDING)
            write_decision(self._dir, replace(record, decision=decision, reason=reason,
                                              applied=False, time=0.0))
            self._decision, self._reason = decision, reason
            self._decided.set()

    def cancel(self, reason: str = "") -> None:
        """The director cancelled the experiment: stop the child, report nothing."""
        log.info("%s: cancelled by the director%s", self.name, f": {reason}" if reason else "")
        with self._lock:
            self._cancelled = True
            self._decided.set()
            process = self._process
        if process is not None:
            process.terminate(self._grace)

    def stop(self) -> None:
        """The envoy stops: SIGTERM the child (killed after the grace); a pending decision
        stays on disk for the next start."""
        with self._lock:
            self._stopping = True
            self._decided.set()
            process = self._process
        if process is not None:
            process.terminate(self._grace)

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._decided.wait()
            with self._lock:
                if self._cancelled or self._stopping:
                    return
                decision, reason = self._decision, self._reason
            if decision is Decision.REJECTED:
                self._report_rejected(reason)
                return
            self._mark_applied()
            self._execute()
        except Exception:  # a bug must not take the envoy down, nor go unseen
            log.exception("%s: the experiment's run failed", self.name)
        finally:
            self.state = RunState.ENDED
            self._on_change(self)

    def _execute(self) -> None:
        channel = self._feedback_factory(self.name)
        process = CollaboratorProcess(self.spec, self._command, on_log=channel.log_line,
                                      on_event=channel.metrics, env=self._env)
        try:
            with self._lock:
                if self._cancelled or self._stopping:
                    return
                self.state = RunState.RUNNING
                process.start()  # under the lock: a cancel now sees the process
                self._process = process
            self._on_change(self)
        except OpenflLikeError as exc:
            channel.close()
            self._fail(START_FAILED, exc.message, [])
            return
        code = process.wait()
        self.exit_code = code
        channel.close()
        with self._lock:
            ended_on_request = self._cancelled or self._stopping
        if code == 0:
            log.info("%s: collaborator finished", self.name)
        elif ended_on_request:
            log.info("%s: collaborator stopped (exit %d)", self.name, code)
        else:
            lines = process.tail()
            self._fail(code, failure_description(lines, code), lines)

    def _report_rejected(self, reason: str) -> None:
        log.info("%s: rejected by the operator: %s", self.name, reason or "(no reason)")
        self._fail(REJECTED, f"rejected by the envoy's operator: {reason}".rstrip(": "), [])
        self._mark_applied()

    def _mark_applied(self) -> None:
        record = read_decision(self._dir)
        if record is not None and not record.applied:
            write_decision(self._dir, replace(record, applied=True))

    def _fail(self, code: int, description: str, lines: list[str]) -> None:
        log.warning("%s: failed (%d): %s", self.name, code, description)
        try:
            self._port.set_experiment_failed(self.name, code, description, lines)
        except OpenflLikeError as exc:
            log.warning("%s: could not report the failure to the director: %s", self.name, exc)
