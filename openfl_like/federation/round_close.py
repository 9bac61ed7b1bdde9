"""Closing a round as a transaction: build the next state aside, persist it, return it.

Nothing here touches the live aggregator: ``close_round`` reads a frozen ``CloseInput`` (the
round's results, the committed state and model) and returns a ``ClosedRound`` (the next state,
the next model, the round's record) that is already durable when it returns. The closer swaps
it in afterwards. If any step raises, the committed state on disk and in memory is untouched:
files written for the failed attempt are unreferenced (swept at start-up), and the server
optimizer's state is restored from its persisted copy.

Order of the persisted steps (see ``state`` for the crash story): new model file (unless the
model is derived from staged updates), optimizer file, then the snapshot; the snapshot's
atomic replace is the commit point.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from openfl_like.core.messages import TaskKind
from openfl_like.federation.aggregation import AggregationAlgorithm, Contribution, FedAvg
from openfl_like.federation.round_state import Verdict
from openfl_like.federation.state import (
    AggregatorState,
    DerivedPart,
    ResultRecord,
    StateStore,
    disk_error,
)
from openfl_like.federation.tensorbuffer import MemoryTensorReader
from openfl_like.federation.tensorfile import (
    TensorFileReader,
    read_tensor_file,
    write_tensor_file,
)
from openfl_like.plan.schema import ModeSettings, Plan

# Steps a fault hook is called with (tests inject failures or crashes there).
STEP_AGGREGATE = "aggregate"
STEP_MODEL_WRITE = "model_write"
STEP_SNAPSHOT_WRITE = "snapshot_write"
STEP_OUTPUTS = "outputs"

FaultHook = Callable[[str, int], None]


def staleness_weight(mode: ModeSettings, staleness: int) -> float:
    """FedBuff's s(t): how much an update trained ``staleness`` versions ago still counts."""
    if staleness <= 0 or mode.staleness == "constant":
        return 1.0
    if mode.staleness == "polynomial":
        return float((1 + staleness) ** -mode.staleness_exponent)
    if staleness <= mode.hinge_after:
        return 1.0
    return 1.0 / (mode.staleness_exponent * (staleness - mode.hinge_after) + 1.0)


def weighted_means(entries: Sequence[tuple[int, Mapping[str, float]]]) -> dict[str, float]:
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


@dataclass(frozen=True)
class CloseInput:
    """Everything a close reads, taken under the aggregator's lock and never mutated."""

    round_number: int
    verdict: Verdict
    final: bool
    results: tuple[ResultRecord, ...]
    present: tuple[str, ...]
    dropped: Mapping[str, str]
    state: AggregatorState
    model: Mapping[str, np.ndarray]
    age_seconds: float


@dataclass(frozen=True)
class ClosedRound:
    state: AggregatorState
    model: dict[str, np.ndarray]
    record: dict[str, Any]
    dead_files: list[Path]  # no longer referenced by the new state: delete off the hot path


class ModelFiles:
    """Reads the global models a state refers to (a file, or recomputed from staged updates)."""

    def __init__(self, store: StateStore, algorithm: AggregationAlgorithm) -> None:
        self.store = store
        self.algorithm = algorithm
        self.fresh: set[str] = set()  # files this process wrote: no need to re-check their CRCs

    def reader(self, path: Path, entries: Any = None) -> TensorFileReader:
        return TensorFileReader(path, entries, verify=path.name not in self.fresh)

    def load(self, state: AggregatorState, round_number: int) -> dict[str, np.ndarray]:
        parts = state.derived_models.get(round_number)
        if parts is None:
            path = self.store.model_path(state.model_files[round_number])
            return read_tensor_file(path, verify=path.name not in self.fresh)
        readers = [self.reader(self.store.staging / p.staged, p.staged_entries()) for p in parts]
        try:
            # np.empty touches no memory: only names, dtypes and shapes are read from it.
            model = {name: np.empty(e.shape, dtype=e.dtype)
                     for name, e in sorted(readers[0].entries.items())}
            self.algorithm.combine(model, [
                Contribution(p.collaborator, p.weight, reader, tie_break=p.tie_break)
                for p, reader in zip(parts, readers, strict=True)
            ])
        finally:
            for reader in readers:
                reader.close()
        return model

    def write(self, name: str, tensors: Mapping[str, np.ndarray]) -> None:
        """A model or optimizer file of the state folder (a full disk is UnavailableError)."""
        path = self.store.model_path(name)
        try:
            write_tensor_file(path, tensors)
        except OSError as exc:
            raise disk_error(path, exc) from None
        self.fresh.add(name)

    def restore_optimizer(self, state: AggregatorState) -> None:
        """Put the server optimizer back to what ``state`` persisted (after a failed close)."""
        if state.optimizer_file:
            self.algorithm.load_state(read_tensor_file(
                self.store.model_path(state.optimizer_file)))
        elif not self.algorithm.stateless:
            self.algorithm.load_state({})


def round_record(plan: Plan, inp: CloseInput) -> dict[str, Any]:
    r = inp.round_number
    by_task: dict[str, list[tuple[int, Mapping[str, float]]]] = {}
    per_collaborator: dict[str, dict[str, dict[str, float]]] = {}
    for rec in inp.results:
        entry = {**rec.metrics, "data_size": float(rec.data_size)}
        if rec.key.round_number != r:
            entry["staleness"] = float(r - rec.key.round_number)
        per_collaborator.setdefault(rec.key.collaborator, {})[rec.key.task_name] = entry
        # Only results computed on this round's model describe it.
        if rec.key.round_number == r:
            by_task.setdefault(rec.key.task_name, []).append((rec.data_size, rec.metrics))
    record: dict[str, Any] = {
        "round": r,
        "kind": "final_validation" if inp.final else "train",
        "closed_by": inp.verdict.value,
        "closed_at": time.time(),
        "duration_seconds": inp.age_seconds,
        "collaborators": list(inp.present),
        "missing": sorted(set(plan.collaborators) - set(inp.present)),
        "metrics": {task: weighted_means(e) for task, e in sorted(by_task.items())},
        "per_collaborator": per_collaborator,
    }
    if inp.dropped:
        record["dropped"] = dict(sorted(inp.dropped.items()))
    return record


class RoundTransaction:
    """Builds, persists and returns the next state for one ``CloseInput``."""

    def __init__(self, plan: Plan, store: StateStore, models: ModelFiles,
                 fault_hook: FaultHook | None = None) -> None:
        self.plan = plan
        self.store = store
        self.models = models
        self.algorithm = models.algorithm
        self._async = plan.mode.name == "async"
        self._last_round = plan.aggregator.rounds_to_train \
            if TaskKind.VALIDATE_GLOBAL in plan.tasks else plan.aggregator.rounds_to_train - 1
        self._hook = fault_hook

    def _step(self, step: str, round_number: int) -> None:
        if self._hook is not None:
            self._hook(step, round_number)

    def run(self, inp: CloseInput) -> ClosedRound:
        try:
            return self._run(inp)
        except BaseException:
            self.models.restore_optimizer(inp.state)
            raise

    def _run(self, inp: CloseInput) -> ClosedRound:
        r = inp.round_number
        record = round_record(self.plan, inp)
        state = copy.copy(inp.state)
        state.model_files = dict(state.model_files)
        state.derived_models = dict(state.derived_models)
        state.results = []
        best = self.plan.aggregator.best_model
        value = record["metrics"].get(TaskKind.VALIDATE_GLOBAL.value, {}).get(best.metric)
        if value is not None and best.better(value, state.best_metric):
            state.best_round, state.best_metric = r, float(value)
        model = dict(inp.model)
        if not inp.final:
            self._step(STEP_AGGREGATE, r)
            model = self._aggregate(inp, state)
        state.history = [*inp.state.history, record]
        keys = dict(state.recent_keys)
        for rec in inp.results:
            keys[str(rec.key)] = r
        keep_after = r - (self.plan.mode.max_staleness if self._async else 0)
        state.recent_keys = {k: v for k, v in keys.items() if v >= keep_after}
        state.round_number = r if inp.final else r + 1
        state.done = r >= self._last_round
        keep = {state.round_number}
        if state.best_round is not None:
            keep.add(state.best_round)
        if self._async:
            keep.update(range(state.round_number - self.plan.mode.max_staleness,
                              state.round_number))
        state.keep_models(keep)
        self._step(STEP_SNAPSHOT_WRITE, r)
        self.store.save(state)
        staged = {rec.staged for rec in inp.results if rec.staged}
        staged |= {p.staged for parts in inp.state.derived_models.values() for p in parts}
        dead = [p for name in sorted(staged - state.staged_in_use())
                for p in self.store.staged_paths(name)]
        return ClosedRound(state, model, record, dead + self.store.garbage(state, staging=False))

    def _aggregate(self, inp: CloseInput, state: AggregatorState) -> dict[str, np.ndarray]:
        """The next model, built beside the current one (which stays served until the swap)."""
        r = inp.round_number
        trains = sorted((rec for rec in inp.results
                         if rec.key.task_name == TaskKind.TRAIN.value and rec.has_update),
                        key=lambda rec: str(rec.key))
        model = dict(inp.model)
        readers: list[TensorFileReader] = []
        try:
            contributions = []
            bases: dict[int, TensorFileReader] = {}
            for rec in trains:
                reader = self._update_reader(rec)
                readers.append(reader)
                base = None
                weight = float(rec.data_size)
                if self._async:
                    b = rec.key.round_number
                    if b not in bases:
                        bases[b] = self.models.reader(
                            self.store.model_path(inp.state.model_files[b]))
                        readers.append(bases[b])
                    base = bases[b]
                    weight *= staleness_weight(self.plan.mode, r - b)
                contributions.append(Contribution(rec.key.collaborator, weight, reader, base,
                                                  tie_break=str(rec.key)))
            if self._async:
                assert isinstance(self.algorithm, FedAvg)
                self.algorithm.combine(model, contributions,
                                       delta_normaliser=float(sum(t.data_size for t in trains)))
            else:
                self.algorithm.combine(model, contributions)
        finally:
            for reader in readers:
                reader.close()
        for array in model.values():
            array.flags.writeable = False
        if self.algorithm.stateless and not self._async and all(t.staged for t in trains):
            # The staged updates are durable already; recomputing from them gives these bits.
            state.derived_models[r + 1] = [
                DerivedPart(c.reader.path.name, c.collaborator, c.weight, c.tie_break,
                            rec.layout)
                for c, rec in zip(contributions, trains, strict=True)
            ]
            return model
        self._step(STEP_MODEL_WRITE, r)
        name = f"model-r{r + 1}.bin"
        self.models.write(name, model)
        state.model_files[r + 1] = name
        optimizer = self.algorithm.state_arrays()
        if optimizer:
            opt_name = f"opt-r{r + 1}.bin"
            self.models.write(opt_name, optimizer)
            state.optimizer_file = opt_name
        return model

    def _update_reader(self, rec: ResultRecord) -> TensorFileReader:
        """A staged update's reader: its staging file, or the bytes its journal line keeps."""
        entries = rec.staged_entries()
        if rec.inline is not None:
            assert entries is not None
            return MemoryTensorReader(rec.inline, entries, label=f"the journal line of {rec.key}")
        assert rec.staged is not None
        return self.models.reader(self.store.staging / rec.staged, entries)

