"""Receiving results: check, stage and journal them; tell the closer when the round is due.

This is all an upload costs the server: the result's metadata is checked (bounds, the sample
counts its collaborator declared), duplicates and late or misdirected results are answered
without touching anything, the update is staged (``uploads``), its journal line written under
the lock and synced outside it (so concurrent uploads share one fsync), and the closer is
signalled when the O(1) round state says the round is due. Nothing here aggregates, writes a
model or waits for a round to close.

A full disk is UNAVAILABLE with the path (the collaborator retries); uploads are refused until
the aggregator sees room again. A result for a round that is being closed is refused (it can no
longer count) or, in asynchronous mode where it would count in the next version, UNAVAILABLE.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from openfl_like.core.errors import PermissionDeniedError, ProtocolError, UnavailableError
from openfl_like.core.logging import get_logger
from openfl_like.core.messages import (
    NamedTensor,
    ResultAck,
    ResultKey,
    TaskKind,
    TaskResult,
    TensorStream,
)
from openfl_like.federation.declarations import Declarations
from openfl_like.federation.journal import Journal, ResultRecord
from openfl_like.federation.live_state import LiveState
from openfl_like.federation.round_close import ModelFiles
from openfl_like.federation.round_state import Verdict
from openfl_like.federation.state import StateStore
from openfl_like.federation.uploads import Staged, Stager, refuse_tensors
from openfl_like.federation.validation import check_data_size, check_metrics
from openfl_like.plan.schema import Plan

log = get_logger(__name__)


class ResultIntake:
    def __init__(self, plan: Plan, live: LiveState, *, store: StateStore, stager: Stager,
                 models: ModelFiles, declared: Declarations, signal: Callable[[], None],
                 after_upload: Callable[[int], object] | None, model_bytes: int) -> None:
        self.plan = plan
        self._live = live
        self._store = store
        self._stager = stager
        self._models = models
        self._declared = declared
        self._signal = signal  # the closer's: the round may be due
        # Called with the update's size after each file-staged update, off the lock: the app
        # returns the upload's freed buffers to the kernel there (transport.memory).
        self._after_upload = after_upload
        self._model_bytes = model_bytes
        self._collaborators = frozenset(plan.collaborators)
        self._async = plan.mode.name == "async"


    def _refusal(self, key: ResultKey) -> ResultAck | None:
        """Duplicate / stale / misdirected results (lock held). None means: go ahead."""
        r = self._live.state.round_number
        if self._live.round.has(key) or str(key) in self._live.state.recent_keys:
            return ResultAck(accepted=True, duplicate=True, message=f"{key} was already applied")
        if self._live.finished():
            return ResultAck(accepted=False, message="the federation has ended")
        final = self._live.round.is_final
        oldest = r - self.plan.mode.max_staleness if self._async and not final else r
        if key.round_number > r:
            raise ProtocolError(f"{key}: round {key.round_number} has not started "
                                f"(current round {r})")
        sync_round = not self._async or final
        if key.round_number < oldest or (self._live.closing and sync_round
                                         and key.round_number == r):
            return ResultAck(accepted=False, message=f"{key}: round {key.round_number} is "
                             f"closed (current round {r}); the result was not counted")
        if self._live.closing:  # it will count in the next version: have it sent again
            raise UnavailableError(f"round {r} is closing; send the result again in a moment")
        if key.task_name not in {t.name for t in self._live.round.assigned(key.collaborator,
                                                                      key.round_number)}:
            raise ProtocolError(f"{key}: task {key.task_name!r} was not assigned in round "
                                f"{key.round_number}")
        if self._async and key.round_number < r and key.task_name == TaskKind.TRAIN.value \
                and not self._live.state.has_model(key.round_number):
            return ResultAck(accepted=False, message=f"{key}: too stale")
        if self._live.stopped:
            raise UnavailableError("the aggregator is stopping; send the result again later")
        if self._live.disk_problem:
            raise UnavailableError(self._live.disk_problem)
        return None

    def receive_tensors(self, result: TaskResult, tensors: Iterator[NamedTensor]) -> ResultAck:
        return self._receive(result, lambda key: self._stager.stage_tensors(key, tensors),
                             lambda key: refuse_tensors(key, (t.name for t in tensors)))

    def receive_streams(self, result: TaskResult, tensors: Iterator[TensorStream]) -> ResultAck:
        """Each tensor goes to the staging file chunk by chunk as it arrives."""
        return self._receive(result, lambda key: self._stager.stage_streams(key, tensors),
                             lambda key: refuse_tensors(key, (t.name for t in tensors)))

    @contextmanager
    def _in_call(self, collaborator: str) -> Iterator[None]:
        """While an upload streams in, its sender counts as alive (as a parked poll does): a
        large model over a slow link must not get it dropped for silence."""
        with self._live.lock:
            self._live.round.park(collaborator, +1)
        try:
            yield
        finally:
            with self._live.lock:
                self._live.round.park(collaborator, -1)
                self._live.touch(collaborator)

    def _checked(self, result: TaskResult) -> list[TaskResult]:
        """The upload's results (the main one first), each checked; only the main one may be a
        train result, and all belong to one collaborator and round."""
        results = [result, *result.also]
        key = result.key
        if key.collaborator not in self._collaborators:
            raise PermissionDeniedError(f"{key.collaborator!r} is not a collaborator of this plan")
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
        with self._live.lock:
            self._live.touch(key.collaborator)
            early = self._refusal(key)
        if early is not None:
            self._receive_also(results[1:])
            return early
        staged: Staged | None = None
        if is_train:
            try:
                with self._in_call(key.collaborator):  # a long upload is a sign of life
                    staged = stage(key)
            except UnavailableError as exc:
                self._live.set_disk_problem(exc.message)
                log.error("upload of %s refused: %s", key, exc.message)
                raise
            if staged.name:
                self._models.fresh.add(staged.name)
            if self._after_upload is not None and staged.inline is None:
                self._after_upload(self._model_bytes)
        else:
            no_tensors(key)
        with self._live.lock:
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
            due = due or (late is None and
                          self._live.round.verdict(self._live.clock()) is not Verdict.OPEN)
        if late is None and is_train:
            self._store.sync(ticket)  # outside the lock: concurrent uploads share one fsync
        elif also_ticket is not None:
            self._store.sync(also_ticket)
        if due:
            self._signal()
        return outcome

    def _journal_locked(self, record: ResultRecord, staged: Staged | None
                        ) -> tuple[Journal, int]:
        try:
            # Metrics-only results skip the fsync: losing one in a crash only means the
            # collaborator is asked for it again.
            ticket = self._store.append(self._live.state.round_number, record, durable=False)
        except UnavailableError as exc:
            self._live.disk_problem = exc.message
            self._unstage(staged)
            raise
        self._live.round.record(record)
        return ticket

    def _record_also_locked(self, extras: Sequence[TaskResult]
                            ) -> tuple[bool, tuple[Journal, int] | None]:
        """Journal the metrics-only results that came with an upload (lock held)."""
        ticket = None
        for extra in extras:
            if self._refusal(extra.key) is None:
                ticket = self._journal_locked(
                    ResultRecord(extra.key, extra.data_size, dict(extra.metrics)), None)
        due = bool(extras) and self._live.round.verdict(self._live.clock()) is not Verdict.OPEN
        return due, ticket

    def _receive_also(self, extras: Sequence[TaskResult]) -> None:
        """The main result was refused or a duplicate: its companions may still count."""
        if not extras:
            return
        with self._live.lock:
            due, _ = self._record_also_locked(extras)
        if due:
            self._signal()

    def _unstage(self, staged: Staged | None) -> None:
        if staged is not None and staged.name:
            self._store.remove_staged(staged.name)
