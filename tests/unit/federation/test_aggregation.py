"""Aggregation maths against hand computations, over real staged tensor files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from openfl_like.federation.aggregation import (
    Contribution,
    CoordinateMedian,
    FedAvg,
    FedOpt,
    TrimmedMean,
)
from openfl_like.federation.tensorfile import TensorFileReader, write_tensor_file
from openfl_like.plan.schema import AggregationSettings

_OPEN: list[TensorFileReader] = []


@pytest.fixture(autouse=True)
def _close_readers() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def _contribs(tmp_path: Path, updates: dict[str, tuple[float, dict[str, np.ndarray]]]
              ) -> list[Contribution]:
    out = []
    for name, (weight, tensors) in updates.items():
        path = tmp_path / f"{name}.bin"
        write_tensor_file(path, tensors)
        _OPEN.append(TensorFileReader(path))
        out.append(Contribution(name, weight, _OPEN[-1]))
    return out


def _updates() -> dict[str, tuple[float, dict[str, np.ndarray]]]:
    rng = np.random.default_rng(3)
    return {
        f"col{i}": (float(10 * (i + 1)), {
            "w": rng.normal(size=(5, 7)).astype(np.float32),
            "count": np.array([i, 2 * i, 7], dtype=np.int32),
            "flag": np.array([i > 0, False]),
        })
        for i in range(3)
    }


def test_fedavg_matches_hand_computation_and_keeps_dtypes(tmp_path: Path) -> None:
    # Prepare
    updates = _updates()
    model = {k: np.zeros_like(v) for k, v in updates["col0"][1].items()}
    # Execute
    FedAvg().combine(model, _contribs(tmp_path, updates))
    # Assert
    weights = np.array([u[0] for u in updates.values()])
    stack = np.stack([u[1]["w"].astype(np.float64) for u in updates.values()])
    expected = (np.tensordot(weights, stack, axes=1) / weights.sum()).astype(np.float32)
    np.testing.assert_allclose(model["w"], expected, rtol=1e-6)
    assert model["w"].dtype == np.float32
    assert model["count"].dtype == np.int32
    # (0*10 + 1*20 + 2*30) / 60 = 1.33 -> 1; (0 + 40 + 120) / 60 = 2.67 -> 3; 7 stays 7
    assert model["count"].tolist() == [1, 3, 7]
    assert model["flag"].dtype == np.bool_ and model["flag"].tolist() == [True, False]


def test_fedavg_is_independent_of_arrival_order(tmp_path: Path) -> None:
    updates = _updates()
    first = {k: np.zeros_like(v) for k, v in updates["col0"][1].items()}
    second = {k: np.zeros_like(v) for k, v in updates["col0"][1].items()}
    contribs = _contribs(tmp_path, updates)
    FedAvg().combine(first, contribs)
    FedAvg().combine(second, list(reversed(contribs)))
    for name in first:
        assert np.array_equal(first[name], second[name])


def test_fedavg_blocks_cover_a_tensor_larger_than_one_block(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    import openfl_like.federation.aggregation as aggregation

    monkeypatch.setattr(aggregation, "BLOCK_ELEMENTS", 7)
    a = np.arange(50, dtype=np.float64)
    model = {"x": np.zeros(50)}
    FedAvg().combine(model, _contribs(tmp_path, {"a": (1.0, {"x": a}), "b": (3.0, {"x": -a})}))
    np.testing.assert_array_equal(model["x"], (a - 3 * a) / 4)


def test_median_and_trimmed_mean(tmp_path: Path) -> None:
    values = [np.array([1.0, 10.0]), np.array([2.0, -5.0]), np.array([100.0, 0.0]),
              np.array([3.0, 1.0]), np.array([4.0, 2.0])]
    updates = {f"c{i}": (1.0, {"x": v}) for i, v in enumerate(values)}
    median = {"x": np.zeros(2)}
    CoordinateMedian().combine(median, _contribs(tmp_path, updates))
    assert median["x"].tolist() == [3.0, 1.0]
    trimmed = {"x": np.zeros(2)}
    TrimmedMean(0.2).combine(trimmed, _contribs(tmp_path, updates))
    # drop 1 lowest and 1 highest per coordinate: mean(2,3,4)=3 ; mean(0,1,2)=1
    assert trimmed["x"].tolist() == [3.0, 1.0]


@pytest.mark.parametrize("optimizer", ["adam", "yogi"])
def test_fedopt_one_step_matches_the_formula(tmp_path: Path, optimizer: str) -> None:
    s = AggregationSettings(name="fedopt", optimizer=optimizer, lr=0.1, beta1=0.9, beta2=0.99,
                            tau=1e-3)
    x = np.array([1.0, -2.0, 0.5])
    model = {"x": x.copy()}
    updates = {"a": (1.0, {"x": np.array([2.0, -2.0, 0.0])}),
               "b": (3.0, {"x": np.array([0.0, -1.0, 1.0])})}
    algo = FedOpt(s)
    algo.combine(model, _contribs(tmp_path, updates))
    avg = (np.array([2.0, -2.0, 0.0]) + 3 * np.array([0.0, -1.0, 1.0])) / 4
    d = avg - x
    m = 0.1 * d
    v0 = np.full(3, 1e-6)
    v = v0 - 0.01 * d**2 * np.sign(v0 - d**2) if optimizer == "yogi" else 0.99 * v0 + 0.01 * d**2
    np.testing.assert_allclose(model["x"], x + 0.1 * m / (np.sqrt(v) + 1e-3))
    state = algo.state_arrays()
    assert set(state) == {"m/x", "v/x"}
    restored = FedOpt(s)
    restored.load_state(state)
    np.testing.assert_array_equal(restored.m["x"], algo.m["x"])
