"""The aggregator's round state machine; satisfies transport.handlers.AggregatorHandler.

Rounds ``0 .. rounds_to_train - 1`` train; then, when the plan validates the global model, one
final round only validates it (so the final model has metrics and can be the best one). In
asynchronous mode a "round" is a model version: it closes when ``mode.buffer_size`` train updates
are in (FedBuff), and updates trained on older versions are accepted with a staleness weight.

Threading: every public method may be called from many transport threads at once. One
``threading.Condition`` guards the state; parked ``get_tasks`` calls wait on it and are woken the
moment a round closes. Nothing sleeps: the only timed waits are the long-poll bound and the
round deadline. The deadline is checked on every call and by every timed wait; the process's
main thread should sit in ``wait_until_done()``, which also wakes at the deadline, so a round
closes on time even when no collaborator is calling.

Receiving an update: its tensors are validated one by one and streamed to a staging file outside
the lock (fsynced); over gRPC each tensor arrives chunk by chunk (``TensorStream``: layout checked
first, values per chunk), so an upload holds about one chunk in memory, not one tensor. Then,
under the lock, the result is journalled (the moment it is applied) and the round may close.
Closing aggregates the staged files in collaborator order (see ``aggregation``), writes the new
model file (or, when the aggregate is a function of the staged updates alone, names them as its
source), then the snapshot; see ``state`` for the crash story.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from openfl_like.core.errors import (
    FederationError,
    NotFoundError,
    PermissionDeniedError,
    PlanMismatchError,
    ProtocolError,
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
    TaskSpec,
    TasksReply,
    TensorStream,
)
from openfl_like.federation.aggregation import Contribution, FedAvg, make_aggregation
from openfl_like.federation.assigner import make_assigner
from openfl_like.federation.outputs import OutputWriter
from openfl_like.federation.state import AggregatorState, DerivedPart, ResultRecord, StateStore
from openfl_like.federation.stragglers import StragglerPolicy, Verdict
from openfl_like.federation.tensorfile import (
    Layout,
    TensorFileReader,
    TensorFileWriter,
    layout_of,
    read_tensor_file,
    write_tensor_file,
)
from openfl_like.federation.validation import (
    ModelSpec,
    check_data_size,
    check_metrics,
    finite_pieces,
)
from openfl_like.plan.digest import describe_differences, plan_digest, plan_fingerprint
from openfl_like.plan.schema import ModeSettings, Plan

log = get_logger(__name__)

_T = TypeVar("_T")


def staleness_weight(mode: ModeSettings, staleness: int) -> float:
    """FedBuff's s(t): how much an update trained ``staleness`` versions ago still counts."""
    if staleness <= 0 or mode.staleness == "constant":
        return 1.0
    if mode.staleness == "polynomial":
        return float((1 + staleness) ** -mode.staleness_exponent)
    if staleness <= mode.hinge_after:
        return 1.0
    return 1.0 / (mode.staleness_exponent * (staleness - mode.hinge_after) + 1.0)


def _weighted_means(entries: Sequence[tuple[int, Mapping[str, float]]]) -> dict[str, float]:
    names = sorted({n for _, metrics in entries for n in metrics})
    means: dict[str, float] = {}
    for name in names:
        pairs = [(size, m[name]) for size, m in entries if name in m]
        total = sum(size for size, _ in pairs)
        if total > 0:
            means[name] = math.fsum(size * v for size, v in pairs) / total
        else:
            means[name] = math.fsum(v for _, v in pairs) / len(pairs)
    return means


def _delete_in_background(paths: list[Path]) -> None:
    """Unlink files the state no longer refers to, off the round's critical path.

    A crash before they are gone is harmless: start-up sweeps what the state does not name.
    """
    if not paths:
        return

    def unlink_all() -> None:
        for path in paths:
            with contextlib.suppress(OSError):
                path.unlink()

    threading.Thread(target=unlink_all, name="aggregator-cleanup", daemon=True).start()


class Aggregator:
    """Runs one federation of ``plan``; state in ``state_dir``, outputs in ``output_dir``.

    ``initial_weights`` seed a new federation (e.g. ``runner.get_weights()``); with existing
    state in ``state_dir`` the federation resumes where it stopped and they are ignored.
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
    ) -> None:
        self.plan = plan
        # Called with the update's size in bytes after each update is staged, off the lock and
        # before the round may close: the app returns the upload's freed buffers to the kernel there
        # (transport.memory.release_free_heap), so they are not resident while aggregating.
        self._after_upload = after_upload
        self.name = plan.aggregator.name
        self._clock = clock
        self._digest = plan_digest(plan)
        self._fingerprint = plan_fingerprint(plan)
        self._collaborators = frozenset(plan.collaborators)
        self._assigner = make_assigner(plan)
        self._policy = StragglerPolicy(plan.stragglers)
        self._algorithm = make_aggregation(plan.aggregation)
        self._async = plan.mode.name == "async"
        self._rounds = plan.aggregator.rounds_to_train
        self._last_round = self._rounds if TaskKind.VALIDATE_GLOBAL in plan.tasks else \
            self._rounds - 1
        self._store = StateStore(state_dir if state_dir is not None else plan.state_dir)
        self._cond = threading.Condition()
        self._stopped = False
        self._last_seen: dict[str, float] = {}
        self._parked: dict[str, int] = {}
        self._outputs = (
            OutputWriter(output_dir if output_dir is not None else plan.output_dir,
                         tensorboard=plan.aggregator.write_tensorboard,
                         plot=plan.aggregator.write_plot)
            if write_outputs else None
        )
        if self._store.exists():
            self._state = self._resume()
        else:
            if initial_weights is None:
                raise FederationError(
                    f"{self._store.root}: no saved state, and no initial model to start from"
                )
            self._state = self._start(initial_weights)
        self._round_started = self._clock()
        self._index_results()
        with self._cond:
            self._advance()

    # ----------------------------------------------------------------------------- start/resume
    def _start(self, weights: Mapping[str, np.ndarray]) -> AggregatorState:
        self._spec = ModelSpec.of(weights)
        self._model = {n: self._readonly(self._owned(weights[n])) for n in self._spec.names}
        state = AggregatorState(plan_digest=self._digest,
                                federation_uuid=self.plan.federation_uuid)
        name = "model-r0.bin"
        write_tensor_file(self._store.model_path(name), self._model)
        state.model_files = {0: name}
        self._store.save(state)
        log.info("federation %s starts: %d rounds, %d collaborators, state in %s",
                 self.plan.federation.name, self._rounds, len(self._collaborators),
                 self._store.root)
        return state

    def _resume(self) -> AggregatorState:
        state = self._store.load()
        if state.plan_digest != self._digest:
            raise FederationError(
                f"{self._store.root}: the saved federation ran another plan (digest "
                f"{state.plan_digest[:12]}, this plan {self._digest[:12]}); use another workspace "
                "or remove the old state"
            )
        self._state = state  # (_load_model reads it)
        model = self._load_model(state.round_number)
        self._spec = ModelSpec.of(model)
        self._model = {n: self._readonly(a) for n, a in model.items()}
        if state.optimizer_file:
            self._algorithm.load_state(
                read_tensor_file(self._store.model_path(state.optimizer_file))
            )
        self._store.collect_garbage(state, staging=True)
        log.info("resuming federation %s at round %d with %d result(s) already in",
                 self.plan.federation.name, state.round_number, len(state.results))
        return state

    def _load_model(self, round_number: int) -> dict[str, np.ndarray]:
        """The global model of ``round_number`` from its file, or recomputed from its updates."""
        parts = self._state.derived_models.get(round_number)
        if parts is None:
            return read_tensor_file(self._store.model_path(self._state.model_files[round_number]))
        readers = [TensorFileReader(self._store.staging / p.staged, p.staged_entries())
                   for p in parts]
        try:
            # np.empty touches no memory: only names, dtypes and shapes are read from it.
            model = {name: np.empty(e.shape, dtype=e.dtype)
                     for name, e in sorted(readers[0].entries.items())}
            self._algorithm.combine(model, [
                Contribution(p.collaborator, p.weight, reader, tie_break=p.tie_break)
                for p, reader in zip(parts, readers, strict=True)
            ])
        finally:
            for reader in readers:
                reader.close()
        return model

    @staticmethod
    def _owned(array: np.ndarray) -> np.ndarray:
        """The initial tensor to keep: read-only input as given, anything else copied.

        A caller that hands over read-only arrays (e.g. the noop runner's model) promises not to
        write them; copying them anyway would hold two models at start-up (512 MiB for the
        256 MiB benchmark) while the caller still references its own.
        """
        if isinstance(array, np.ndarray) and not array.flags.writeable \
                and array.flags.c_contiguous:
            return array
        return np.array(array, copy=True)

    @staticmethod
    def _readonly(array: np.ndarray) -> np.ndarray:
        array.flags.writeable = False
        return array

    def _index_results(self) -> None:
        """Indexes of the open round's results, so a verdict costs O(collaborators), not
        O(collaborators x results) (it is taken on every call)."""
        self._open_keys = {str(r.key) for r in self._state.results}
        self._done: dict[str, set[str]] = {}
        for rec in self._state.results:
            self._note_done(rec)

    def _note_done(self, rec: ResultRecord) -> None:
        if rec.key.round_number == self._state.round_number:
            self._done.setdefault(rec.key.collaborator, set()).add(rec.key.task_name)

    # ----------------------------------------------------------------------------- round logic
    def _is_final(self, round_number: int) -> bool:
        return round_number >= self._rounds

    def _assigned(self, collaborator: str, round_number: int) -> tuple[TaskSpec, ...]:
        return self._assigner.tasks_for(collaborator, round_number,
                                        final=self._is_final(round_number))

    def _done_tasks(self, collaborator: str) -> set[str]:
        return self._done.get(collaborator, set())

    def _pending(self, collaborator: str) -> tuple[TaskSpec, ...]:
        done = self._done_tasks(collaborator)
        return tuple(t for t in self._assigned(collaborator, self._state.round_number)
                     if t.name not in done)

    def _primary_task(self) -> str:
        final = self._is_final(self._state.round_number)
        return TaskKind.VALIDATE_GLOBAL.value if final else TaskKind.TRAIN.value

    def _present(self) -> list[str]:
        primary = self._primary_task()
        return sorted({r.key.collaborator for r in self._state.results
                       if r.key.task_name == primary})

    def _age(self) -> float:
        return self._clock() - self._round_started

    def _verdict(self) -> Verdict:
        complete = all(not self._pending(c) for c in self._collaborators)
        if self._async and not self._is_final(self._state.round_number):
            trains = sum(1 for r in self._state.results if r.key.task_name == TaskKind.TRAIN.value)
            if complete or trains >= self.plan.mode.buffer_size:
                return Verdict.CLOSE_COMPLETE if complete else Verdict.CLOSE_DEADLINE
            return Verdict.OPEN
        return self._policy.verdict(age_seconds=self._age(), complete=complete,
                                    present=len(self._present()))

    def _advance(self) -> None:
        """Close the round or fail the federation when the policy says so (lock held)."""
        if self._state.done or self._state.failed or self._stopped:
            return
        verdict = self._verdict()
        if verdict is Verdict.FAIL:
            s = self.plan.stragglers
            self._fail(
                f"round {self._state.round_number}: deadline of {s.round_deadline_seconds:g} s "
                f"passed with {len(self._present())} of the {s.min_collaborators} collaborators "
                "needed"
            )
        elif verdict is not Verdict.OPEN:
            self._close_round(verdict)

    def _fail(self, reason: str) -> None:
        log.error("federation failed: %s", reason)
        self._state.failed = reason
        self._store.save(self._state)
        self._cond.notify_all()

    def _wake_timeout(self, limit: float | None) -> float | None:
        """How long a waiter may block: its own limit, cut at the round deadline if pending."""
        to_deadline = self._policy.seconds_to_deadline(self._age())
        if to_deadline is not None and to_deadline > 0 and not self._async:
            deadline_wait = to_deadline + 0.001
            return deadline_wait if limit is None else min(limit, deadline_wait)
        return limit

    def _round_record(self, verdict: Verdict) -> dict[str, Any]:
        r = self._state.round_number
        by_task: dict[str, list[tuple[int, Mapping[str, float]]]] = {}
        per_collaborator: dict[str, dict[str, dict[str, float]]] = {}
        for rec in self._state.results:
            entry = {**rec.metrics, "data_size": float(rec.data_size)}
            if rec.key.round_number != r:
                entry["staleness"] = float(r - rec.key.round_number)
            per_collaborator.setdefault(rec.key.collaborator, {})[rec.key.task_name] = entry
            # Only results computed on this round's model describe it.
            if rec.key.round_number == r:
                by_task.setdefault(rec.key.task_name, []).append((rec.data_size, rec.metrics))
        present = self._present()
        return {
            "round": r,
            "kind": "final_validation" if self._is_final(r) else "train",
            "closed_by": verdict.value,
            "closed_at": time.time(),
            "duration_seconds": self._age(),
            "collaborators": present,
            "missing": sorted(self._collaborators - set(present)),
            "metrics": {task: _weighted_means(e) for task, e in sorted(by_task.items())},
            "per_collaborator": per_collaborator,
        }

    def _close_round(self, verdict: Verdict) -> None:
        state = self._state
        r = state.round_number
        record = self._round_record(verdict)
        # Best model: judged on the aggregated-validation metrics of the model of this round.
        best = self.plan.aggregator.best_model
        value = record["metrics"].get(TaskKind.VALIDATE_GLOBAL.value, {}).get(best.metric)
        if value is not None and best.better(value, state.best_metric):
            state.best_round, state.best_metric = r, float(value)
        trained = not self._is_final(r)
        if trained:
            self._aggregate(r)
        state.history.append(record)
        for rec in state.results:
            state.recent_keys[str(rec.key)] = r
        keep_after = r - (self.plan.mode.max_staleness if self._async else 0)
        state.recent_keys = {k: v for k, v in state.recent_keys.items() if v >= keep_after}
        staged = [rec.staged for rec in state.results if rec.staged]
        staged += [p.staged for parts in state.derived_models.values() for p in parts]
        state.results = []
        state.round_number = r + 1 if trained else r
        self._index_results()
        if r >= self._last_round:
            state.done = True
        keep = {state.round_number}
        if state.best_round is not None:
            keep.add(state.best_round)
        if self._async:
            keep.update(range(state.round_number - self.plan.mode.max_staleness,
                              state.round_number))
        state.keep_models(keep)
        self._store.save(state)
        # Unlinking big files takes ext4 a while (~0.25 s per 256 MiB); nothing waits for it.
        dead = [p for name in sorted(set(staged) - state.staged_in_use())
                for p in self._store.staged_paths(name)]
        _delete_in_background(dead + self._store.garbage(state, staging=False))
        self._round_started = self._clock()
        log.info("round %d closed (%s) with %d collaborator(s)%s", r, verdict.value,
                 len(record["collaborators"]),
                 f"; missing {', '.join(record['missing'])}" if record["missing"] else "")
        if self._outputs is not None:
            self._outputs.round_closed(record, state.history)
            if state.done:
                self._outputs.finish(self._model, self.best_weights(), state.history)
        self._cond.notify_all()

    def _aggregate(self, r: int) -> None:
        state = self._state
        trains = [rec for rec in state.results
                  if rec.key.task_name == TaskKind.TRAIN.value and rec.staged]
        readers: list[TensorFileReader] = []
        try:
            contributions = []
            bases: dict[int, TensorFileReader] = {}
            for rec in trains:
                reader = TensorFileReader(self._store.staging / rec.staged,  # type: ignore[operator]
                                          rec.staged_entries())
                readers.append(reader)
                base = None
                weight = float(rec.data_size)
                if self._async:
                    b = rec.key.round_number
                    if b not in bases:
                        bases[b] = TensorFileReader(self._store.model_path(state.model_files[b]))
                        readers.append(bases[b])
                    base = bases[b]
                    weight *= staleness_weight(self.plan.mode, r - b)
                contributions.append(Contribution(rec.key.collaborator, weight, reader, base,
                                                  tie_break=str(rec.key)))
            # In place, tensor by tensor: each old tensor is freed as its successor is ready
            # (downloads in flight hold their own references), so memory stays near one model.
            if self._async:
                assert isinstance(self._algorithm, FedAvg)
                self._algorithm.combine(self._model, contributions,
                                        delta_normaliser=float(sum(t.data_size for t in trains)))
            else:
                self._algorithm.combine(self._model, contributions)
        except BaseException:
            # Never serve a half-aggregated model: go back to the saved one.
            self._model = {n: self._readonly(a) for n, a in self._load_model(r).items()}
            raise
        finally:
            for reader in readers:
                reader.close()
        for array in self._model.values():
            self._readonly(array)
        if self._algorithm.stateless and not self._async:
            # The staged updates are durable already; recomputing from them gives these bits.
            state.derived_models[r + 1] = [
                DerivedPart(c.reader.path.name, c.collaborator, c.weight, c.tie_break,
                            rec.layout)
                for c, rec in zip(contributions, trains, strict=True)
            ]
            return
        name = f"model-r{r + 1}.bin"
        write_tensor_file(self._store.model_path(name), self._model)
        state.model_files[r + 1] = name
        optimizer = self._algorithm.state_arrays()
        if optimizer:
            opt_name = f"opt-r{r + 1}.bin"
            write_tensor_file(self._store.model_path(opt_name), optimizer)
            state.optimizer_file = opt_name

    # ----------------------------------------------------------------------------- handler API
    def is_authorized(self, collaborator: str) -> bool:
        return collaborator in self._collaborators

    def _check_participant(self, collaborator: str) -> None:
        if collaborator not in self._collaborators:
            raise PermissionDeniedError(f"{collaborator!r} is not a collaborator of this plan")

    def _touch(self, collaborator: str) -> None:
        self._last_seen[collaborator] = self._clock()

    def handshake(self, collaborator: str, plan_digest: str,
                  plan_fingerprint: Mapping[str, str]) -> HandshakeReply:
        self._check_participant(collaborator)
        if plan_digest != self._digest:
            lines = describe_differences(self._fingerprint, plan_fingerprint,
                                         where=f"collaborator {collaborator}")
            detail = "; ".join(lines[:10]) if lines else (
                f"digest {self._digest[:12]} here, {plan_digest[:12]} at {collaborator}")
            raise PlanMismatchError(f"plan differs from the aggregator's: {detail}")
        with self._cond:
            self._touch(collaborator)
            self._advance()
            return HandshakeReply(round_number=self._state.round_number,
                                  rounds_total=self._rounds, done=self._finished())

    def _finished(self) -> bool:
        return self._state.done or bool(self._state.failed)

    def heartbeat(self, collaborator: str) -> HeartbeatReply:
        self._check_participant(collaborator)
        with self._cond:
            self._touch(collaborator)
            self._advance()
            return HeartbeatReply(round_number=self._state.round_number, done=self._finished())

    def get_tasks(self, collaborator: str, wait_seconds: float) -> TasksReply:
        self._check_participant(collaborator)
        end = self._clock() + max(0.0, wait_seconds)
        with self._cond:
            while True:
                self._touch(collaborator)
                self._advance()
                r = self._state.round_number
                if self._state.failed:
                    return TasksReply(PollStatus.DONE, r, reason=f"federation failed: "
                                      f"{self._state.failed}")
                if self._state.done:
                    return TasksReply(PollStatus.DONE, r, reason="federation finished")
                pending = () if self._stopped else self._pending(collaborator)
                if pending:
                    return TasksReply(PollStatus.WORK, r, tasks=pending)
                remaining = end - self._clock()
                if remaining <= 0 or self._stopped:
                    return TasksReply(PollStatus.WAIT, r, reason="waiting for the round to close")
                self._parked[collaborator] = self._parked.get(collaborator, 0) + 1
                try:
                    self._cond.wait(self._wake_timeout(remaining))
                finally:
                    self._parked[collaborator] -= 1

    def get_aggregated_tensors(self, collaborator: str, round_number: int,
                               names: Sequence[str], tags: Sequence[str]) -> Iterable[NamedTensor]:
        self._check_participant(collaborator)
        if any(tag != AGGREGATED_TAG for tag in tags):
            raise PermissionDeniedError(
                "only the aggregated model can be fetched; tags "
                f"{sorted(set(tags) - {AGGREGATED_TAG})} are not served"
            )
        with self._cond:
            self._touch(collaborator)
            current = self._state.round_number
            if round_number != current:
                raise NotFoundError(f"the model of round {round_number} is not available "
                                    f"(the current round is {current})")
            snapshot = dict(self._model)
        wanted = list(names) if names else list(snapshot)
        unknown = [n for n in wanted if n not in snapshot]
        if unknown:
            raise NotFoundError(f"unknown tensor(s): {', '.join(sorted(unknown)[:5])}")
        return [NamedTensor(n, snapshot[n], current, (AGGREGATED_TAG,)) for n in wanted]

    def _refusal(self, result: TaskResult) -> ResultAck | None:
        """Duplicate / stale / misdirected results (lock held). None means: go ahead."""
        key, r = result.key, self._state.round_number
        if str(key) in self._open_keys or str(key) in self._state.recent_keys:
            return ResultAck(accepted=True, duplicate=True,
                             message=f"{key} was already applied")
        if self._finished():
            return ResultAck(accepted=False, message="the federation has ended")
        oldest = r - self.plan.mode.max_staleness if self._async and not self._is_final(r) else r
        if key.round_number > r:
            raise ProtocolError(f"{key}: round {key.round_number} has not started "
                                f"(current round {r})")
        if key.round_number < oldest:
            return ResultAck(accepted=False, message=f"{key}: round {key.round_number} is "
                             f"closed (current round {r}); the result was not counted")
        assigned = {t.name for t in self._assigned(key.collaborator, key.round_number)}
        if key.task_name not in assigned:
            raise ProtocolError(f"{key}: task {key.task_name!r} was not assigned in round "
                                f"{key.round_number}")
        if self._async and key.round_number < r and key.task_name == TaskKind.TRAIN.value \
                and not self._state.has_model(key.round_number):
            return ResultAck(accepted=False, message=f"{key}: too stale")
        return None

    def send_local_task_results(self, result: TaskResult,
                                tensors: Iterator[NamedTensor]) -> ResultAck:
        return self._receive(result, lambda key: self._stage(key, self._write_tensors, tensors),
                             lambda key: self._no_tensors(key, (t.name for t in tensors)))

    def send_local_task_result_streams(self, result: TaskResult,
                                       tensors: Iterator[TensorStream]) -> ResultAck:
        """As ``send_local_task_results``, but each tensor goes to the staging file chunk by
        chunk as it arrives (``transport.handlers.StreamingUploads``): an upload holds about
        one chunk in memory, whatever the tensor's size."""
        return self._receive(result, lambda key: self._stage(key, self._write_streams, tensors),
                             lambda key: self._no_tensors(key, (t.name for t in tensors)))

    def _receive(self, result: TaskResult, stage: Callable[[ResultKey], tuple[str, Layout]],
                 no_tensors: Callable[[ResultKey], None]) -> ResultAck:
        key = result.key
        self._check_participant(key.collaborator)
        is_train = key.task_name == TaskKind.TRAIN.value
        metrics = check_metrics(result.metrics)
        data_size = check_data_size(result.data_size, needs_positive=is_train)
        with self._cond:
            self._touch(key.collaborator)
            self._advance()
            early = self._refusal(result)
        if early is not None:
            return early
        staged, layout = stage(key) if is_train else (no_tensors(key), None)
        if staged and self._after_upload is not None:
            self._after_upload(sum(a.nbytes for a in self._model.values()))
        with self._cond:
            self._advance()
            late = self._refusal(result)
            if late is not None:
                if staged:
                    self._store.remove_staged(staged)
                return late
            record = ResultRecord(key, data_size, metrics, staged, layout)
            self._store.append(self._state.round_number, record)
            self._state.results.append(record)
            self._open_keys.add(str(key))
            self._note_done(record)
            self._touch(key.collaborator)
            # No notify here: waiters wait for a round to close or the federation to end, and
            # _close_round / _fail notify them. Waking every parked long-poll on every result
            # would cost O(collaborators^2) wake-ups per round.
            self._advance()
        return ResultAck(accepted=True, message=f"{key} applied")

    def _stage(self, key: ResultKey, write: Callable[[TensorFileWriter, Iterator[_T]], None],
               tensors: Iterator[_T]) -> tuple[str, Layout]:
        """Stream the update to a durable staging file; its layout goes in the journal line.

        Any refusal (bad layout, bytes or values, a broken stream) removes the file before the
        update could be journalled, so a refused update leaves nothing behind.
        """
        path = self._store.staging_path(key)
        writer = TensorFileWriter(path)
        try:
            write(writer, tensors)
            self._spec.check_complete(writer.entries)
            entries = writer.commit(manifest_file=False)
        except BaseException as exc:
            writer.abort()
            if isinstance(exc, ProtocolError):
                log.warning("refused %s: %s", key, exc.message)
                raise ProtocolError(f"{key}: {exc.message}") from None
            raise
        return path.name, layout_of(entries)

    def _write_tensors(self, writer: TensorFileWriter, tensors: Iterator[NamedTensor]) -> None:
        for tensor in tensors:
            self._spec.check_tensor(tensor.name, tensor.array, seen=writer.entries)
            writer.write(tensor.name, tensor.array)
            # Let go of the received buffer before the next tensor arrives: the loop
            # variable would otherwise keep it alive through the next receive (one more
            # tensor-size buffer per upload in flight).
            del tensor

    def _write_streams(self, writer: TensorFileWriter, tensors: Iterator[TensorStream]) -> None:
        for stream in tensors:
            self._spec.check_layout(stream.name, stream.dtype, stream.shape, seen=writer.entries)
            writer.write_stream(stream.name, stream.dtype, stream.shape,
                                finite_pieces(stream.name, stream.dtype, stream.chunks))

    @staticmethod
    def _no_tensors(key: ResultKey, names: Iterator[str]) -> None:
        for name in names:
            raise ProtocolError(f"{key}: a validation result carries no tensors (got {name!r})")
        return None

    # ----------------------------------------------------------------------------- observers
    def status(self) -> Mapping[str, object]:
        with self._cond:
            self._advance()
            now = self._clock()
            heartbeat = max(self.plan.collaborator.heartbeat_seconds, 1.0)
            r = self._state.round_number
            collaborators: dict[str, object] = {}
            waiting_for = []
            for name in sorted(self._collaborators):
                seen = self._last_seen.get(name)
                pending = [t.name for t in self._pending(name)] if not self._finished() else []
                if pending:
                    waiting_for.append(name)
                collaborators[name] = {
                    "active": self._parked.get(name, 0) > 0
                    or (seen is not None and now - seen <= 3 * heartbeat),
                    "last_seen_seconds_ago": None if seen is None else round(now - seen, 3),
                    "pending_tasks": pending,
                }
            to_deadline = self._policy.seconds_to_deadline(self._age())
            last = self._state.history[-1] if self._state.history else None
            return {
                "federation": self.plan.federation.name,
                "federation_uuid": self.plan.federation_uuid,
                "mode": self.plan.mode.name,
                "aggregation": self.plan.aggregation.name,
                "round": r,
                "rounds_to_train": self._rounds,
                "phase": ("failed" if self._state.failed else "done" if self._state.done
                          else "final_validation" if self._is_final(r) else "training"),
                "failed": self._state.failed,
                "round_age_seconds": round(self._age(), 3),
                "deadline_in_seconds": None if to_deadline is None else round(to_deadline, 3),
                "results_in": len(self._state.results),
                "waiting_for": waiting_for,
                "collaborators": collaborators,
                "last_round": None if last is None else {
                    "round": last["round"], "closed_by": last["closed_by"],
                    "metrics": last["metrics"]},
                "best": {"round": self._state.best_round, "metric": self._state.best_metric,
                         "name": self.plan.aggregator.best_model.metric},
                "tensorboard": bool(self._outputs and self._outputs.tensorboard_available),
            }

    @property
    def round_number(self) -> int:
        with self._cond:
            return self._state.round_number

    @property
    def done(self) -> bool:
        with self._cond:
            return self._finished()

    @property
    def failed(self) -> str:
        with self._cond:
            return self._state.failed

    @property
    def history(self) -> list[dict[str, Any]]:
        with self._cond:
            return list(self._state.history)

    def weights(self) -> dict[str, np.ndarray]:
        """The current global model (the final one once the federation is done)."""
        with self._cond:
            return dict(self._model)

    def best_weights(self) -> dict[str, np.ndarray]:
        """The best model so far by the plan's metric (the current one when none was measured)."""
        with self._cond:
            best = self._state.best_round
            if best is None or best == self._state.round_number:
                return dict(self._model)
            return self._load_model(best)

    def wait_until_done(self, timeout: float | None = None) -> bool:
        """Block until the federation ends (True) or ``timeout`` passes (False).

        Also enforces the round deadline while nobody else is calling: run it in the main thread.
        """
        end = None if timeout is None else self._clock() + timeout
        with self._cond:
            while True:
                self._advance()
                if self._finished():
                    return True
                if self._stopped:
                    return False
                remaining = None if end is None else end - self._clock()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(self._wake_timeout(remaining))

    def stop(self) -> None:
        """Release parked calls and waiters (server shutdown); the state stays on disk."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._outputs is not None:
            with contextlib.suppress(Exception):
                self._outputs.close()
