"""Uploads given as TensorStreams are staged chunk by chunk: bounded memory, same refusals."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from openfl_like.core.errors import ProtocolError
from openfl_like.core.messages import NamedTensor, ResultKey, TaskResult, TensorStream
from openfl_like.federation import Aggregator
from openfl_like.protocol import base_pb2
from openfl_like.protocol.chunking import Chunk, split_tensors, stream_tensors
from tests.unit.federation.harness import declare_all, initial_weights, make_plan

BIG = 8 << 20  # float32 elements: a 32 MiB single-tensor model
CHUNK = 256 << 10


def _result(collaborator: str) -> TaskResult:
    return TaskResult(ResultKey(collaborator, 0, "train"), 10, {"loss": 1.0})


def _big_chunks(value: float, chunk_size: int = CHUNK) -> Iterator[Chunk]:
    """A 32 MiB tensor's chunks, each made only when asked for (as from the network)."""
    meta = base_pb2.TensorMeta(name="w", dtype="float32", shape=(BIG,), nbytes=BIG * 4)
    per_chunk = chunk_size // 4
    for index in range(BIG // per_chunk):
        data = np.full(per_chunk, value, dtype=np.float32).tobytes()
        yield Chunk(data, meta if index == 0 else None)


def _staged(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "state" / "staging"
    return sorted(folder.iterdir()) if folder.exists() else []


def test_large_tensor_is_staged_holding_about_one_chunk(tmp_path: Path) -> None:
    # Prepare: a one-tensor model of 32 MiB, two collaborators
    plan = make_plan(tmp_path, cols=("col1", "col2"))
    agg = declare_all(Aggregator(plan, initial_weights={"w": np.zeros(BIG, np.float32)},
                                 state_dir=tmp_path / "state", write_outputs=False), plan)
    # Act: col1's upload, streamed, with Python allocations traced
    tracemalloc.start()
    try:
        ack = agg.send_local_task_result_streams(
            _result("col1"), stream_tensors(_big_chunks(2.0)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Assert: accepted and staged, with a peak of a few chunks, far below the tensor's 32 MiB
    assert ack.accepted and agg.status()["results_in"] == 1
    assert len(_staged(tmp_path)) == 1
    assert peak < 8 * CHUNK, f"peak {peak} bytes"
    # ... and the staged bytes are the update: with col2's the round closes on their mean
    assert agg.send_local_task_result_streams(
        _result("col2"), stream_tensors(_big_chunks(4.0))).accepted
    for collaborator in ("col1", "col2"):
        for task in ("aggregated_model_validation", "locally_tuned_model_validation"):
            key = ResultKey(collaborator, 0, task)
            assert agg.send_local_task_result_streams(
                TaskResult(key, 10, {"acc": 0.5}), iter([])).accepted
    assert agg.wait_for_round(1)
    weights = agg.weights()["w"]
    assert weights.shape == (BIG,) and np.all(weights == 3.0)
    agg.stop()


def _model_chunks(weights: dict[str, np.ndarray], chunk_size: int = 5) -> list[Chunk]:
    return list(split_tensors([NamedTensor(n, a) for n, a in weights.items()], chunk_size))


def _bad_uploads() -> dict[str, list[Chunk]]:
    good = _model_chunks(initial_weights())
    nan = initial_weights()
    nan["dense/kernel"] = nan["dense/kernel"].copy()
    nan["dense/kernel"][1, 2] = np.nan  # in a later chunk than the first
    inf = initial_weights()
    inf["dense/bias"] = np.array([0, 0, np.inf], np.float32)
    return {
        "truncated": good[:-1],
        "overlong": [*good[:-1], Chunk(bytes(good[-1].data) + b"\0" * 8)],
        "trailing bytes": [*good, Chunk(b"\0" * 8)],
        "nan": _model_chunks(nan),
        "inf": _model_chunks(inf),
        "shape": _model_chunks({**initial_weights(), "dense/bias": np.zeros(4, np.float32)}),
        "dtype": _model_chunks({**initial_weights(), "dense/bias": np.zeros(3, np.float64)}),
        "unknown": _model_chunks({**initial_weights(), "other": np.zeros(1, np.float32)}),
        "missing": _model_chunks({k: v for k, v in initial_weights().items() if k != "steps"}),
    }


@pytest.mark.parametrize("reason", sorted(_bad_uploads()))
def test_bad_streamed_updates_leave_nothing_staged_or_applied(tmp_path: Path,
                                                              reason: str) -> None:
    # Prepare
    plan = make_plan(tmp_path)
    agg = declare_all(Aggregator(plan, initial_weights=initial_weights(), inline_max_bytes=0,
                                 state_dir=tmp_path / "state", write_outputs=False), plan)
    before = agg.weights()
    # Act
    with pytest.raises(ProtocolError):
        agg.send_local_task_result_streams(_result("col1"),
                                           stream_tensors(_bad_uploads()[reason]))
    # Assert: nothing applied, nothing staged, the model untouched; a good retry still counts
    assert agg.status()["results_in"] == 0
    assert _staged(tmp_path) == []
    for name, array in agg.weights().items():
        assert np.array_equal(array, before[name])
    good = _model_chunks(initial_weights())
    assert agg.send_local_task_result_streams(_result("col1"), stream_tensors(good)).accepted
    assert len(_staged(tmp_path)) == 1
    agg.stop()


def test_pieces_splitting_an_element_are_refused(tmp_path: Path) -> None:
    # A handler caller that breaks the TensorStream contract gets a refusal, not garbage.
    plan = make_plan(tmp_path)
    agg = declare_all(Aggregator(plan, initial_weights=initial_weights(),
                                 state_dir=tmp_path / "state", write_outputs=False), plan)
    raw = initial_weights()["dense/bias"].tobytes()
    streams = iter([TensorStream("dense/bias", np.dtype("<f4"), (3,), 12,
                                 iter([memoryview(raw[:6]), memoryview(raw[6:])]))])
    with pytest.raises(ProtocolError, match="splits an element"):
        agg.send_local_task_result_streams(_result("col1"), streams)
    assert _staged(tmp_path) == []
    agg.stop()
