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
import threading
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
    ResultKey,
    TaskKind,
    TaskResult,
    TasksReply,
    TensorStream,
)
from openfl_like.core.waiting import Wakeup
from openfl_like.federation.aggregation import make_aggregation
from openfl_like.federation.assigner import make_assigner
from openfl_like.federation.closer import CloseRetry, RoundCloser
from openfl_like.federation.declarations import Declarations
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
    Journal,
    ResultRecord,
    StateStore,
    disk_error,
)
from openfl_like.federation.status_view import status_of
from openfl_like.federation.tensorbuffer import INLINE_MAX_BYTES
from openfl_like.federation.uploads import Staged, Stager, refuse_tensors
from openfl_like.federation.validation import ModelSpec, check_data_size, check_metrics
from openfl_like.plan.digest import describe_differences, plan_digest, plan_fingerprint
from openfl_like.plan.schema import Plan

log = get_logger(__name__)

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
    ) -> None:
        self.plan = plan
        # Called with the update's size after each update is staged, off the lock: the app
        # returns the upload's freed buffers to the kernel there (transport.memory).
        self._after_upload = after_upload
        self.name = plan.aggregator.name
        self._clock = clock
        self._digest = plan_digest(plan)
        self._fingerprint = plan_fingerprint(plan)
        self._collaborators = frozenset(plan.collaborators)
        self._rounds = plan.aggregator.rounds_to_train
        self._async = plan.mode.name == "async"
        self._store = StateStore(state_dir if state_dir is not None else plan.state_dir)
        self._models = ModelFiles(self._store, make_aggregation(plan.aggregation))
        self._declared = Declarations(self._store.root)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a round closed or the run ended
        self._waiters: set[Wakeup] = set()
        self._ended = threading.Event()
        self._stopped = False
        self._closing = False
        self._disk_problem = ""
        self._disk_checked = 0.0
        self.exported = False  # final exports written (the closer does it when the run ends)
        self._outputs = (
            OutputWriter(output_dir if output_dir is not None else plan.output_dir,
                         tensorboard=plan.aggregator.write_tensorboard,
                         plot=plan.aggregator.write_plot)
            if write_outputs else None
        )
        if self._store.exists():
            self._state, model = self._resume()
        else:
            if initial_weights is None:
                raise FederationError(
                    f"{self._store.root}: no saved state, and no initial model to start from"
                )
            self._state, model = self._start(initial_weights)
        self._spec = ModelSpec.of(model)
        self._model: dict[str, np.ndarray] = model
        self._model_bytes = sum(a.nbytes for a in model.values())
        self._stager = Stager(self._store, self._spec, inline_max_bytes=inline_max_bytes)
        rules = RoundRules(self._collaborators, self._rounds, plan.stragglers, plan.mode,
                           plan.stragglers.liveness_timeout_seconds)
        self._round = RoundState.open(rules, make_assigner(plan), self._state.round_number,
                                      clock(), self._state.results)
        if self._state.failed:
            self._ended.set()  # (a finished one is set once the closer has redone the exports)
        # The outputs step's hook runs inside write_outputs (not the closer's), so that a
        # failure there still marks a finished federation as ended.
        self._fault_hook = fault_hook
        self._closer = RoundCloser(
            self, RoundTransaction(plan, self._store, self._models, fault_hook),
            retry=close_retry)
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
        with self._lock:
            now = self._clock()
            rnd = self._round
            for name in rnd.silent(now):
                timeout = self.plan.stragglers.liveness_timeout_seconds
                if rnd.drop(name, f"silent for more than {timeout:g} s"):
                    log.warning("%s dropped from round %d: no call for %g s; the round no "
                                "longer waits for it", name, rnd.round_number, timeout)
            if self._finished() or self._stopped or self._closing:
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
            self._closing = True
            return CloseInput(
                round_number=rnd.round_number, verdict=verdict, final=rnd.is_final,
                results=tuple(rnd.results), present=tuple(sorted(rnd.present)),
                dropped=dict(rnd.dropped), state=self._state, model=self._model,
                age_seconds=rnd.age(now)), None

    def commit(self, closed: ClosedRound) -> None:
        """Closer: swap in a durable closed round and wake every parked long-poll."""
        with self._lock:
            self._state = closed.state
            self._model = closed.model
            self._round = self._round.next_round(closed.state.round_number, self._clock())
            self._closing = False
            self._disk_problem = ""
            waiters = list(self._waiters)
            self._changed.notify_all()
        record = closed.record
        log.info("round %d closed (%s) with %d collaborator(s)%s%s", record["round"],
                 record["closed_by"], len(record["collaborators"]),
                 f"; missing {', '.join(record['missing'])}" if record["missing"] else "",
                 "; the federation is done" if closed.state.done else "")
        for waiter in waiters:
            waiter.wake()

    def abort_close(self, reason: str | None) -> None:
        with self._lock:
            self._closing = False
            if reason:
                self._fail_locked(reason)

    def set_disk_problem(self, message: str) -> None:
        with self._lock:
            self._disk_problem = message

    def write_outputs(self, closed: ClosedRound) -> None:
        try:
            if self._fault_hook is not None:
                self._fault_hook(STEP_OUTPUTS, closed.record["round"])
            if self._outputs is not None:
                self._outputs.round_closed(closed.record, closed.state.history)
            if closed.state.done:
                self.export_final()
        finally:
            if closed.state.done:
                self._ended.set()

    def on_start(self) -> None:
        """Closer thread, first: a federation that had ended gets its exports redone (a crash
        may have cut them short)."""
        if self._state.done:
            try:
                self.export_final()
            finally:
                self._ended.set()

    def _fail_locked(self, reason: str) -> None:
        log.error("federation failed: %s", reason)
        self._state.failed = reason
        try:
            self._store.save(self._state)
        except Exception as exc:
            log.error("could not persist the failure: %s", exc)
        self._ended.set()
        self._changed.notify_all()
        for waiter in self._waiters:
            waiter.wake()

    def _probe_disk(self) -> None:
        """After a full disk: accept uploads again once there is room for one more model."""
        if not self._disk_problem or self._clock() - self._disk_checked < DISK_PROBE_SECONDS:
            return
        self._disk_checked = self._clock()
        try:
            stat = os.statvfs(self._store.root)
        except OSError:
            return
        if stat.f_bavail * stat.f_frsize > 2 * self._model_bytes + (16 << 20):
            log.info("disk space is back in %s: accepting uploads again", self._store.root)
            with self._lock:
                self._disk_problem = ""

    # ----------------------------------------------------------------------------- handler API
    def is_authorized(self, collaborator: str) -> bool:
        return collaborator in self._collaborators

    def _check_participant(self, collaborator: str) -> None:
        if collaborator not in self._collaborators:
            raise PermissionDeniedError(f"{collaborator!r} is not a collaborator of this plan")

    def _finished(self) -> bool:
        return self._state.done or bool(self._state.failed)

    def handshake(self, collaborator: str, plan_digest: str,
                  plan_fingerprint: Mapping[str, str],
                  sample_counts: Mapping[str, int] | None = None) -> HandshakeReply:
        """Compare plans and record the collaborator's sample counts (``declarations``)."""
        self._check_participant(collaborator)
        if plan_digest != self._digest:
            lines = describe_differences(self._fingerprint, plan_fingerprint,
                                         where=f"collaborator {collaborator}")
            detail = "; ".join(lines[:10]) if lines else (
                f"digest {self._digest[:12]} here, {plan_digest[:12]} at {collaborator}")
            raise PlanMismatchError(f"plan differs from the aggregator's: {detail}")
        if sample_counts is not None:
            try:
                self._declared.declare(collaborator, sample_counts)
            except OSError as exc:
                raise disk_error(self._declared.path, exc) from None
        with self._lock:
            self._round.touch(collaborator, self._clock())
            return HandshakeReply(round_number=self._state.round_number,
                                  rounds_total=self._rounds, done=self._finished(),
                                  failed=self._state.failed)

    def heartbeat(self, collaborator: str) -> HeartbeatReply:
        self._check_participant(collaborator)
        with self._lock:
            self._round.touch(collaborator, self._clock())
            return HeartbeatReply(round_number=self._state.round_number, done=self._finished(),
                                  failed=self._state.failed)

    def _poll_answer(self, collaborator: str) -> TasksReply | None:
        """The long-poll's answer now, or None to keep waiting (lock held)."""
        r = self._state.round_number
        if self._state.failed:
            return TasksReply(PollStatus.FAILED, r,
                              reason=f"federation failed: {self._state.failed}")
        if self._state.done:
            return TasksReply(PollStatus.DONE, r, reason="federation finished")
        if self._stopped:
            return TasksReply(PollStatus.WAIT, r, reason="the aggregator is stopping; "
                              "come back later")
        if not self._closing:
            pending = self._round.pending(collaborator)
            if pending:
                return TasksReply(PollStatus.WORK, r, tasks=pending)
        return None

    def get_tasks(self, collaborator: str, wait_seconds: float, *,
                  wakeup: Wakeup | None = None) -> TasksReply:
        """Long-poll: answer at once if there is work or news, else park on ``wakeup`` (the
        transport's, cancelled when the call ends) until a round closes or time is up."""
        self._check_participant(collaborator)
        end = self._clock() + max(0.0, wait_seconds)
        waiter = wakeup or Wakeup()
        while True:
            with self._lock:
                now = self._clock()
                self._round.touch(collaborator, now)
                reply = self._poll_answer(collaborator)
                remaining = end - now
                if reply is None and (remaining <= 0 or waiter.cancelled):
                    reply = TasksReply(PollStatus.WAIT, self._state.round_number,
                                       reason="waiting for the round to close")
                if reply is not None:
                    return reply
                seen = waiter.seq
                self._waiters.add(waiter)
                self._round.park(collaborator, 1)
            try:
                waiter.wait(seen, remaining)
            finally:
                with self._lock:
                    self._waiters.discard(waiter)
                    self._round.park(collaborator, -1)

    def get_aggregated_tensors(self, collaborator: str, round_number: int,
                               names: Sequence[str], tags: Sequence[str]) -> Iterable[NamedTensor]:
        self._check_participant(collaborator)
        if any(tag != AGGREGATED_TAG for tag in tags):
            raise PermissionDeniedError(
                "only the aggregated model can be fetched; tags "
                f"{sorted(set(tags) - {AGGREGATED_TAG})} are not served"
            )
        with self._lock:
            self._round.touch(collaborator, self._clock())
            current = self._state.round_number
            if round_number != current:
                raise NotFoundError(f"the model of round {round_number} is not available "
                                    f"(the current round is {current})")
            snapshot = self._model
        wanted = list(names) if names else list(snapshot)
        if len(set(wanted)) != len(wanted):
            raise ProtocolError("duplicate tensor names in the request")
        unknown = [n for n in wanted if n not in snapshot]
        if unknown:
            raise NotFoundError(f"unknown tensor(s): {', '.join(sorted(unknown)[:5])}")
        return [NamedTensor(n, snapshot[n], current, (AGGREGATED_TAG,)) for n in wanted]

    def _refusal(self, key: ResultKey) -> ResultAck | None:
        """Duplicate / stale / misdirected results (lock held). None means: go ahead."""
        r = self._state.round_number
        if self._round.has(key) or str(key) in self._state.recent_keys:
            return ResultAck(accepted=True, duplicate=True, message=f"{key} was already applied")
        if self._finished():
            return ResultAck(accepted=False, message="the federation has ended")
        final = self._round.is_final
        oldest = r - self.plan.mode.max_staleness if self._async and not final else r
        if key.round_number > r:
            raise ProtocolError(f"{key}: round {key.round_number} has not started "
                                f"(current round {r})")
        sync_round = not self._async or final
        if key.round_number < oldest or (self._closing and sync_round
                                         and key.round_number == r):
            return ResultAck(accepted=False, message=f"{key}: round {key.round_number} is "
                             f"closed (current round {r}); the result was not counted")
        if self._closing:  # it will count in the next version: have it sent again
            raise UnavailableError(f"round {r} is closing; send the result again in a moment")
        if key.task_name not in {t.name for t in self._round.assigned(key.collaborator,
                                                                      key.round_number)}:
            raise ProtocolError(f"{key}: task {key.task_name!r} was not assigned in round "
                                f"{key.round_number}")
        if self._async and key.round_number < r and key.task_name == TaskKind.TRAIN.value \
                and not self._state.has_model(key.round_number):
            return ResultAck(accepted=False, message=f"{key}: too stale")
        if self._stopped:
            raise UnavailableError("the aggregator is stopping; send the result again later")
        if self._disk_problem:
            raise UnavailableError(self._disk_problem)
        return None

    def send_local_task_results(self, result: TaskResult,
                                tensors: Iterator[NamedTensor]) -> ResultAck:
        return self._receive(result, lambda key: self._stager.stage_tensors(key, tensors),
                             lambda key: refuse_tensors(key, (t.name for t in tensors)))

    def send_local_task_result_streams(self, result: TaskResult,
                                       tensors: Iterator[TensorStream]) -> ResultAck:
        """As ``send_local_task_results``, but each tensor goes to the staging file chunk by
        chunk as it arrives (``transport.handlers.StreamingUploads``)."""
        return self._receive(result, lambda key: self._stager.stage_streams(key, tensors),
                             lambda key: refuse_tensors(key, (t.name for t in tensors)))

    def _checked(self, result: TaskResult) -> list[TaskResult]:
        """The upload's results (the main one first), each checked; only the main one may be a
        train result, and all belong to one collaborator and round."""
        results = [result, *result.also]
        key = result.key
        self._check_participant(key.collaborator)
        for extra in result.also:
            if (extra.key.collaborator, extra.key.round_number) != \
                    (key.collaborator, key.round_number) or extra.also:
                raise ProtocolError(f"{extra.key}: results sent with {key} must be of the same "
                                    "collaborator and round")
            if extra.key.task_name == TaskKind.TRAIN.value:
                raise ProtocolError(f"{extra.key}: a train result must be the upload's first")
        if len({str(r.key) for r in results}) != len(results):
            raise ProtocolError(f"{key}: the same result twice in one upload")
        checked = [TaskResult(r.key, check_data_size(
                       r.data_size, needs_positive=r.key.task_name == TaskKind.TRAIN.value),
                       check_metrics(r.metrics)) for r in results]
        for r in checked:
            self._declared.check(r.key, r.data_size)
        return checked

    def _receive(self, result: TaskResult, stage: Callable[[ResultKey], Staged],
                 no_tensors: Callable[[ResultKey], None]) -> ResultAck:
        results = self._checked(result)
        key = result.key
        is_train = key.task_name == TaskKind.TRAIN.value
        with self._lock:
            self._round.touch(key.collaborator, self._clock())
            early = self._refusal(key)
        if early is not None:
            self._receive_also(results[1:])
            return early
        staged: Staged | None = None
        if is_train:
            try:
                staged = stage(key)
            except UnavailableError as exc:
                self.set_disk_problem(exc.message)
                log.error("upload of %s refused: %s", key, exc.message)
                raise
            if staged.name:
                self._models.fresh.add(staged.name)
            if self._after_upload is not None and staged.inline is None:
                self._after_upload(self._model_bytes)
        else:
            no_tensors(key)
        with self._lock:
            try:
                late = self._refusal(key)
            except BaseException:
                self._unstage(staged)
                raise
            if late is not None:
                self._unstage(staged)
                outcome = late
            else:
                main = ResultRecord(key, results[0].data_size, dict(results[0].metrics),
                                    staged.name if staged else None,
                                    staged.layout if staged else None,
                                    staged.inline if staged else None)
                ticket = self._journal_locked(main, staged)
                outcome = ResultAck(accepted=True, message=f"{key} applied")
            due, also_ticket = self._record_also_locked(results[1:])
            due = due or (late is None and self._round.verdict(self._clock()) is not Verdict.OPEN)
        if late is None and is_train:
            self._store.sync(ticket)  # outside the lock: concurrent uploads share one fsync
        elif also_ticket is not None:
            self._store.sync(also_ticket)
        if due:
            self._closer.signal()
        return outcome

    def _journal_locked(self, record: ResultRecord, staged: Staged | None
                        ) -> tuple[Journal, int]:
        try:
            # Metrics-only results skip the fsync: losing one in a crash only means the
            # collaborator is asked for it again.
            ticket = self._store.append(self._state.round_number, record, durable=False)
        except UnavailableError as exc:
            self._disk_problem = exc.message
            self._unstage(staged)
            raise
        self._round.record(record)
        return ticket

    def _record_also_locked(self, extras: Sequence[TaskResult]
                            ) -> tuple[bool, tuple[Journal, int] | None]:
        """Journal the metrics-only results that came with an upload (lock held)."""
        ticket = None
        for extra in extras:
            if self._refusal(extra.key) is None:
                ticket = self._journal_locked(
                    ResultRecord(extra.key, extra.data_size, dict(extra.metrics)), None)
        return bool(extras) and self._round.verdict(self._clock()) is not Verdict.OPEN, ticket

    def _receive_also(self, extras: Sequence[TaskResult]) -> None:
        """The main result was refused or a duplicate: its companions may still count."""
        if not extras:
            return
        with self._lock:
            due, _ = self._record_also_locked(extras)
        if due:
            self._closer.signal()

    def _unstage(self, staged: Staged | None) -> None:
        if staged is not None and staged.name:
            self._store.remove_staged(staged.name)

    # ----------------------------------------------------------------------------- operations
    def mark_revoked(self, names: Iterable[str]) -> None:
        """Drop participants whose certificate was revoked: the rounds stop waiting at once."""
        dropped = False
        with self._lock:
            for name in names:
                if self._round.drop(name, "revoked"):
                    log.warning("%s is revoked: dropped from round %d on", name,
                                self._round.round_number)
                    dropped = True
        if dropped:
            self._closer.signal()

    def awaiting_farewell(self, told: Iterable[str]) -> list[str]:
        """Participants not yet told that the federation ended, and not dropped (lock taken)."""
        told_set = set(told)
        with self._lock:
            return sorted(c for c in self._collaborators
                          if c not in told_set and c not in self._round.dropped)

    def status(self) -> Mapping[str, object]:
        with self._lock:
            return status_of(
                plan=self.plan, state=self._state, rnd=self._round, now=self._clock(),
                closing=self._closing, disk_problem=self._disk_problem,
                stopped=self._stopped, samples=self._declared.counts(),
                tensorboard=bool(self._outputs and self._outputs.tensorboard_available))

    @property
    def round_number(self) -> int:
        with self._lock:
            return self._state.round_number

    @property
    def done(self) -> bool:
        with self._lock:
            return self._finished()

    @property
    def failed(self) -> str:
        with self._lock:
            return self._state.failed

    @property
    def history(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._state.history)

    def weights(self) -> dict[str, np.ndarray]:
        """The current global model (the final one once the federation is done)."""
        with self._lock:
            return dict(self._model)

    def best_weights(self) -> dict[str, np.ndarray]:
        """The best model so far by the plan's metric (the current one when none was measured)."""
        with self._lock:
            state, model = self._state, self._model
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
        with self._changed:
            return self._changed.wait_for(
                lambda: self._state.round_number >= round_number or self._finished(), timeout)

    def wait_until_done(self, timeout: float | None = None) -> bool:
        """Block until the federation ends (True) or ``timeout`` passes (False)."""
        return self._ended.wait(timeout)

    def begin_shutdown(self) -> None:
        """Stop accepting work (SIGTERM): uploads and polls are told to come back later."""
        with self._lock:
            self._stopped = True
            waiters = list(self._waiters)
        for waiter in waiters:
            waiter.wake()

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
