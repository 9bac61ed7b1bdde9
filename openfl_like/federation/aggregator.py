"""The aggregator: the RPC-facing side of a federation; satisfies transport's AggregatorHandler.

Rounds ``0 .. rounds_to_train - 1`` train; then, when the plan validates the global model, one
final round only validates it (so the final model has metrics and can be the best one). In
asynchronous mode a "round" is a model version: it closes when ``mode.buffer_size`` train updates
are in (FedBuff), or when every live participant has reported, or at the deadline with a quorum;
updates trained on older versions are accepted with a staleness weight.

Who does what:

- RPC handlers (many threads) only check, stage and journal a result, update the O(1)
  ``RoundState`` and, when the round is due, signal the closer. They never aggregate, write the
  model or render outputs, and never wait for that work.
- One ``RoundCloser`` thread closes rounds as transactions (``round_close``) and swaps the
  result in under the lock, then wakes each parked long-poll through its own ``Wakeup``.

One lock guards the round state, the committed ``AggregatorState`` and the model reference; it
is never held across disk I/O bigger than one journal line.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from openfl_like.core.errors import (
    FederationError,
    NotFoundError,
    PermissionDeniedError,
    PlanMismatchError,
    ProtocolError,
    UnavailableError,
)
from openfl_like.core.logging import get_logger
from openfl_like.core.messages import (
    AGGREGATED_TAG,
    HandshakeReply,
    HeartbeatReply,
    NamedTensor,
    PollStatus,
    ResultAck,
    TaskResult,
    TasksReply,
    TensorStream,
)
from openfl_like.core.waiting import Wakeup
from openfl_like.federation.aggregation import make_aggregation
from openfl_like.federation.assigner import make_assigner
from openfl_like.federation.closer import CloseRetry, RoundCloser
from openfl_like.federation.declarations import Declarations
from openfl_like.federation.intake import ResultIntake
from openfl_like.federation.live_state import LiveState
from openfl_like.federation.outputs import OutputWriter
from openfl_like.federation.round_close import (
    STEP_OUTPUTS,
    ClosedRound,
    CloseInput,
    FaultHook,
    ModelFiles,
    RoundTransaction,
)
from openfl_like.federation.round_state import RoundRules, RoundState, Verdict
from openfl_like.federation.state import (
    AggregatorState,
    StateStore,
    disk_error,
)
from openfl_like.federation.status_view import status_of
from openfl_like.federation.tensorbuffer import INLINE_MAX_BYTES
from openfl_like.federation.uploads import Stager
from openfl_like.federation.validation import ModelSpec
from openfl_like.plan.contract import contract_digest
from openfl_like.plan.digest import describe_differences, plan_digest, plan_fingerprint
from openfl_like.plan.schema import Plan

log = get_logger(__name__)
_FEDERATION_ID_KEY = "federation.federation_uuid:"

DISK_PROBE_SECONDS = 1.0


def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _owned(array: np.ndarray) -> np.ndarray:
    """The initial tensor to keep: read-only contiguous input as given, anything else copied
    (so a caller handing over a read-only 256 MiB model does not make us hold two)."""
    if isinstance(array, np.ndarray) and not array.flags.writeable and array.flags.c_contiguous:
        return array
    return np.array(array, copy=True)


class Aggregator:
    """Runs one federation of ``plan``; state in ``state_dir``, outputs in ``output_dir``.

    ``initial_weights`` seed a new federation (e.g. ``runner.get_weights()``); with existing
    state in ``state_dir`` the federation resumes where it stopped and they are ignored.
    ``fault_hook(step, round)`` is called at each step of a close (tests inject failures).
    Updates of a model of at most ``inline_max_bytes`` are kept in their journal line instead
    of a staging file (``tensorbuffer``); 0 stages every update as a file.
    """

    def __init__(
        self,
        plan: Plan,
        *,
        initial_weights: Mapping[str, np.ndarray] | None = None,
        state_dir: str | Path | None = None,
        output_dir: str | Path | None = None,
        write_outputs: bool = True,
        clock: Callable[[], float] = time.monotonic,
        after_upload: Callable[[int], object] | None = None,
        fault_hook: FaultHook | None = None,
        close_retry: CloseRetry | None = None,
        inline_max_bytes: int = INLINE_MAX_BYTES,
        start: bool = True,
        on_round_closed: Callable[[Mapping[str, Any]], object] | None = None,
    ) -> None:
        self.plan = plan
        self.name = plan.aggregator.name
        self._digest = plan_digest(plan)
        self._fingerprint = plan_fingerprint(plan)
        self._contract_digest = contract_digest(plan.data_contract) if plan.data_contract else ""
        self._collaborators = frozenset(plan.collaborators)
        self._rounds = plan.aggregator.rounds_to_train
        self._store = StateStore(state_dir if state_dir is not None else plan.state_dir)
        self._models = ModelFiles(self._store, make_aggregation(plan.aggregation))
        self._declared = Declarations(self._store.root)
        self._disk_checked = 0.0
        # Told each closed round's record (closer thread, after it is durable); e.g. a
        # director's events pipe. Its failure is logged, never fails the federation.
        self._on_round_closed = on_round_closed
        self.exported = False  # final exports written (the closer does it when the run ends)
        self._outputs = (
            OutputWriter(output_dir if output_dir is not None else plan.output_dir,
                         tensorboard=plan.aggregator.write_tensorboard,
                         plot=plan.aggregator.write_plot)
            if write_outputs else None
        )
        if self._store.exists():
            state, model = self._resume()
        else:
            if initial_weights is None:
                raise FederationError(
                    f"{self._store.root}: no saved state, and no initial model to start from"
                )
            state, model = self._start(initial_weights)
        rules = RoundRules(self._collaborators, self._rounds, plan.stragglers, plan.mode,
                           plan.stragglers.liveness_timeout_seconds)
        self._live = LiveState(state, model, RoundState.open(
            rules, make_assigner(plan), state.round_number, clock(), state.results), clock)
        if state.failed:
            self._live.ended.set()  # (a finished one is set once the closer has redone exports)
        self._model_bytes = sum(a.nbytes for a in model.values())
        # The outputs step's hook runs inside write_outputs (not the closer's), so that a
        # failure there still marks a finished federation as ended.
        self._fault_hook = fault_hook
        self._closer = RoundCloser(
            self, RoundTransaction(plan, self._store, self._models, fault_hook),
            retry=close_retry)
        self._intake = ResultIntake(
            plan, self._live, store=self._store, models=self._models, declared=self._declared,
            stager=Stager(self._store, ModelSpec.of(model), inline_max_bytes=inline_max_bytes),
            signal=self._closer.signal, after_upload=after_upload,
            model_bytes=self._model_bytes)
        if start:
            self._closer.start()

    # ----------------------------------------------------------------------------- start/resume
    def _start(self, weights: Mapping[str, np.ndarray]
               ) -> tuple[AggregatorState, dict[str, np.ndarray]]:
        model = {n: _readonly(_owned(weights[n])) for n in sorted(weights)}
        ModelSpec.of(model)
        state = AggregatorState(plan_digest=self._digest,
                                federation_uuid=self.plan.federation_uuid)
        name = "model-r0.bin"
        self._models.write(name, model)
        state.model_files = {0: name}
        self._store.save(state)
        log.info("federation %s starts: %d rounds, %d collaborators, state in %s",
                 self.plan.federation.name, self._rounds, len(self._collaborators),
                 self._store.root)
        return state, model

    def _resume(self) -> tuple[AggregatorState, dict[str, np.ndarray]]:
        state = self._store.load()
        if state.plan_digest != self._digest:
            raise FederationError(
                f"{self._store.root}: the saved federation ran another plan (digest "
                f"{state.plan_digest[:12]}, this plan {self._digest[:12]}); use another workspace "
                "or remove the old state"
            )
        model = {n: _readonly(a) for n, a in self._models.load(state, state.round_number).items()}
        self._models.restore_optimizer(state)
        self._store.collect_garbage(state, staging=True)
        log.info("resuming federation %s at round %d with %d result(s) already in%s",
                 self.plan.federation.name, state.round_number, len(state.results),
                 " (it had ended; exports are redone)" if state.done or state.failed else "")
        return state, model

    # ----------------------------------------------------------------------------- the closer
    def tick(self) -> tuple[CloseInput | None, float | None]:
        """Closer: drop silent participants, fail or start closing a due round (lock taken)."""
        self._probe_disk()
        with self._live.lock:
            now = self._live.clock()
            rnd = self._live.round
            for name in rnd.silent(now):
                timeout = self.plan.stragglers.liveness_timeout_seconds
                if rnd.drop(name, f"silent for more than {timeout:g} s"):
                    log.warning("%s dropped: no call for %g s (round %d); the round no longer "
                                "waits for it", name, timeout, rnd.round_number,
                                extra={"round": rnd.round_number, "collaborator": name})
            if self._live.finished() or self._live.stopped or self._live.closing:
                return None, rnd.next_liveness_check(now)
            verdict = rnd.verdict(now)
            if verdict is Verdict.FAIL:
                s = self.plan.stragglers
                self._fail_locked(
                    f"round {rnd.round_number}: deadline of {s.round_deadline_seconds:g} s "
                    f"passed with {len(rnd.present)} of the {s.min_collaborators} "
                    "collaborators needed")
                return None, None
            if verdict is Verdict.OPEN:
                waits = [w for w in (rnd.seconds_to_deadline(now), rnd.next_liveness_check(now))
                         if w is not None]
                return None, (min(waits) + 0.001) if waits else None
            self._live.closing = True
            return CloseInput(
                round_number=rnd.round_number, verdict=verdict, final=rnd.is_final,
                results=tuple(rnd.results), present=tuple(sorted(rnd.present)),
                dropped=dict(rnd.dropped), state=self._live.state, model=self._live.model,
                age_seconds=rnd.age(now)), None

    def commit(self, closed: ClosedRound) -> None:
        """Closer: swap in a durable closed round and wake every parked long-poll."""
        live = self._live
        with live.lock:
            live.state = closed.state
            live.model = closed.model
            live.round = live.round.next_round(closed.state.round_number, live.clock())
            live.closing = False
            live.disk_problem = ""
            live.wake_all()
        record = closed.record
        log.info("round %d closed (%s) with %d collaborator(s)%s%s", record["round"],
                 record["closed_by"], len(record["collaborators"]),
                 f"; missing {', '.join(record['missing'])}" if record["missing"] else "",
                 "; the federation is done" if closed.state.done else "",
                 extra={"round": record["round"]})

    def abort_close(self, reason: str | None) -> None:
        with self._live.lock:
            self._live.closing = False
            if reason:
                self._fail_locked(reason)

    def set_disk_problem(self, message: str) -> None:
        self._live.set_disk_problem(message)

    def write_outputs(self, closed: ClosedRound) -> None:
        try:
            if self._fault_hook is not None:
                self._fault_hook(STEP_OUTPUTS, closed.record["round"])
            if self._outputs is not None:
                self._outputs.round_closed(closed.record, closed.state.history)
            if self._on_round_closed is not None:
                try:
                    self._on_round_closed(closed.record)
                except Exception:
                    log.exception("the round-closed callback failed (round %d)",
                                  closed.record["round"])
            if closed.state.done:
                self.export_final()
        finally:
            if closed.state.done:
                self._live.ended.set()

    def on_start(self) -> None:
        """Closer thread, first: a federation that had ended gets its exports redone (a crash
        may have cut them short)."""
        if self._live.state.done:
            try:
                self.export_final()
            finally:
                self._live.ended.set()

    def _fail_locked(self, reason: str) -> None:
        log.error("federation failed: %s", reason)
        self._live.state.failed = reason
        try:
            self._store.save(self._live.state)
        except Exception as exc:
            log.error("could not persist the failure: %s", exc)
        self._live.ended.set()
        self._live.wake_all()

    def _probe_disk(self) -> None:
        """After a full disk: accept uploads again once there is room for one more model."""
        now = self._live.clock()
        if not self._live.disk_problem or now - self._disk_checked < DISK_PROBE_SECONDS:
            return
        self._disk_checked = now
        try:
            stat = os.statvfs(self._store.root)
        except OSError:
            return
        if stat.f_bavail * stat.f_frsize > 2 * self._model_bytes + (16 << 20):
            log.info("disk space is back in %s: accepting uploads again", self._store.root)
            with self._live.lock:
                self._live.disk_problem = ""

    # ----------------------------------------------------------------------------- handler API
    def is_authorized(self, collaborator: str) -> bool:
        return collaborator in self._collaborators

    def _check_participant(self, collaborator: str) -> None:
        if collaborator not in self._collaborators:
            raise PermissionDeniedError(f"{collaborator!r} is not a collaborator of this plan")

    def handshake(self, collaborator: str, plan_digest: str,
                  plan_fingerprint: Mapping[str, str],
                  sample_counts: Mapping[str, int] | None = None,
                  contract_digest: str | None = None) -> HandshakeReply:
        """Compare data contracts (``contract_digest``: '' for none; None: not sent) and plans,
        and record the collaborator's sample counts (``declarations``)."""
        self._check_participant(collaborator)
        if contract_digest is not None and contract_digest != self._contract_digest:
            here = self._contract_digest[:12] or "(no contract)"
            there = contract_digest[:12] or "(no contract)"
            raise PlanMismatchError(
                f"data contract differs: digest {here} here, {there} at {collaborator}")
        if plan_digest != self._digest:
            lines = describe_differences(self._fingerprint, plan_fingerprint,
                                         where=f"collaborator {collaborator}")
            settings = [line for line in lines if not line.startswith(_FEDERATION_ID_KEY)]
            lines = settings or lines  # the id follows from the settings: name those
            detail = "; ".join(lines[:10]) if lines else (
                f"digest {self._digest[:12]} here, {plan_digest[:12]} at {collaborator}")
            raise PlanMismatchError(f"plan differs from the aggregator's: {detail}")
        if sample_counts is not None:
            try:
                self._declared.declare(collaborator, sample_counts)
            except OSError as exc:
                raise disk_error(self._declared.path, exc) from None
        with self._live.lock:
            self._live.touch(collaborator, handshake=True)
            return HandshakeReply(round_number=self._live.state.round_number,
                                  rounds_total=self._rounds, done=self._live.finished(),
                                  failed=self._live.state.failed)

    def heartbeat(self, collaborator: str) -> HeartbeatReply:
        self._check_participant(collaborator)
        with self._live.lock:
            self._live.touch(collaborator)
            return HeartbeatReply(round_number=self._live.state.round_number,
                                  done=self._live.finished(), failed=self._live.state.failed)

    def _poll_answer(self, collaborator: str) -> TasksReply | None:
        """The long-poll's answer now, or None to keep waiting (lock held)."""
        r = self._live.state.round_number
        if self._live.state.failed:
            return TasksReply(PollStatus.FAILED, r,
                              reason=f"federation failed: {self._live.state.failed}")
        if self._live.state.done:
            return TasksReply(PollStatus.DONE, r, reason="federation finished")
        if self._live.stopped:  # retryable: the collaborator backs off instead of re-polling
            raise UnavailableError("the aggregator is stopping; come back later")
        if not self._live.closing:
            pending = self._live.round.pending(collaborator)
            if pending:
                return TasksReply(PollStatus.WORK, r, tasks=pending)
        return None

    def get_tasks(self, collaborator: str, wait_seconds: float, *,
                  wakeup: Wakeup | None = None) -> TasksReply:
        """Long-poll: answer at once if there is work or news, else park on ``wakeup`` (the
        transport's, cancelled when the call ends) until a round closes or time is up."""
        self._check_participant(collaborator)
        end = self._live.clock() + max(0.0, wait_seconds)
        waiter = wakeup or Wakeup()
        while True:
            with self._live.lock:
                now = self._live.clock()
                self._live.touch(collaborator)
                reply = self._poll_answer(collaborator)
                remaining = end - now
                if reply is None and (remaining <= 0 or waiter.cancelled):
                    reply = TasksReply(PollStatus.WAIT, self._live.state.round_number,
                                       reason="waiting for the round to close")
                if reply is not None:
                    return reply
                seen = waiter.seq
                self._live.waiters.add(waiter)
                self._live.round.park(collaborator, 1)
            try:
                waiter.wait(seen, remaining)
            finally:
                with self._live.lock:
                    self._live.waiters.discard(waiter)
                    self._live.round.park(collaborator, -1)

    def get_aggregated_tensors(self, collaborator: str, round_number: int,
                               names: Sequence[str], tags: Sequence[str]) -> Iterable[NamedTensor]:
        self._check_participant(collaborator)
        if any(tag != AGGREGATED_TAG for tag in tags):
            raise PermissionDeniedError(
                "only the aggregated model can be fetched; tags "
                f"{sorted(set(tags) - {AGGREGATED_TAG})} are not served"
            )
        with self._live.lock:
            self._live.touch(collaborator)
            current = self._live.state.round_number
            if round_number != current:
                raise NotFoundError(f"the model of round {round_number} is not available "
                                    f"(the current round is {current})")
            snapshot = self._live.model
        wanted = list(names) if names else list(snapshot)
        if len(set(wanted)) != len(wanted):
            raise ProtocolError("duplicate tensor names in the request")
        unknown = [n for n in wanted if n not in snapshot]
        if unknown:
            raise NotFoundError(f"unknown tensor(s): {', '.join(sorted(unknown)[:5])}")
        return [NamedTensor(n, snapshot[n], current, (AGGREGATED_TAG,)) for n in wanted]

    def send_local_task_results(self, result: TaskResult,
                                tensors: Iterator[NamedTensor]) -> ResultAck:
        return self._intake.receive_tensors(result, tensors)

    def send_local_task_result_streams(self, result: TaskResult,
                                       tensors: Iterator[TensorStream]) -> ResultAck:
        """As ``send_local_task_results``, but each tensor goes to the staging file chunk by
        chunk as it arrives (``transport.handlers.StreamingUploads``)."""
        return self._intake.receive_streams(result, tensors)

    # ----------------------------------------------------------------------------- operations
    def mark_revoked(self, names: Iterable[str]) -> None:
        """Drop participants whose certificate was revoked: the rounds stop waiting at once."""
        dropped = False
        with self._live.lock:
            for name in names:
                if self._live.round.drop(name, "revoked"):
                    log.warning("%s dropped: its certificate is revoked (round %d)", name,
                                self._live.round.round_number,
                                extra={"round": self._live.round.round_number,
                                       "collaborator": name})
                    dropped = True
        if dropped:
            self._closer.signal()

    def awaiting_farewell(self, told: Iterable[str], *, dropped_too: bool = False
                          ) -> list[str]:
        """Participants not yet told that the federation ended, and not dropped (unless
        ``dropped_too``) (lock taken)."""
        told_set = set(told)
        with self._live.lock:
            return sorted(c for c in self._collaborators if c not in told_set
                          and (dropped_too or c not in self._live.round.dropped))

    def status(self) -> Mapping[str, object]:
        with self._live.lock:
            return status_of(
                plan=self.plan, state=self._live.state, rnd=self._live.round,
                now=self._live.clock(),
                closing=self._live.closing, disk_problem=self._live.disk_problem,
                stopped=self._live.stopped, samples=self._declared.counts(),
                tensorboard=bool(self._outputs and self._outputs.tensorboard_available))

    @property
    def round_number(self) -> int:
        with self._live.lock:
            return self._live.state.round_number

    @property
    def done(self) -> bool:
        with self._live.lock:
            return self._live.finished()

    @property
    def failed(self) -> str:
        with self._live.lock:
            return self._live.state.failed

    @property
    def history(self) -> list[dict[str, Any]]:
        with self._live.lock:
            return list(self._live.state.history)

    def weights(self) -> dict[str, np.ndarray]:
        """The current global model (the final one once the federation is done)."""
        with self._live.lock:
            return dict(self._live.model)

    def best_weights(self) -> dict[str, np.ndarray]:
        """The best model so far by the plan's metric (the current one when none was measured)."""
        with self._live.lock:
            state, model = self._live.state, self._live.model
        best = state.best_round
        if best is None or best == state.round_number:
            return dict(model)
        return self._models.load(state, best)

    def export_final(self) -> None:
        """Write the final and best models (npz) and the plot; idempotent, so a resumed run
        that had ended redoes them."""
        if self._outputs is not None:
            self._outputs.finish(self.weights(), self.best_weights(), self.history)
        self.exported = True

    def wait_for_round(self, round_number: int, timeout: float | None = 10.0) -> bool:
        """Block until round ``round_number`` is open (or the federation ended); False on
        timeout. Rounds close on the closer thread, a moment after their last result."""
        with self._live.changed:
            return self._live.changed.wait_for(
                lambda: self._live.state.round_number >= round_number or self._live.finished(),
                timeout)

    def wait_until_done(self, timeout: float | None = None) -> bool:
        """Block until the federation ends (True) or ``timeout`` passes (False)."""
        return self._live.ended.wait(timeout)

    def begin_shutdown(self) -> None:
        """Stop accepting work (SIGTERM): uploads and polls are told to come back later."""
        with self._live.lock:
            self._live.stopped = True
            self._live.wake_all()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Release parked calls, let a close in progress finish, close files."""
        self.begin_shutdown()
        if not self._closer.stop(timeout):
            log.warning("a round close was still running at shutdown; it is redone on restart")
        self._store.close()
        if self._outputs is not None:
            try:
                self._outputs.close()
            except Exception:
                log.exception("could not finish writing the outputs")
