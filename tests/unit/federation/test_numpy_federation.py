"""The real NumpyRunner through the in-process federation: it learns, and it is reproducible."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from openfl_like.data.digits import load_digits_federation
from openfl_like.federation import Aggregator
from openfl_like.runners.registry import create_runner, evaluate_weights, initial_weights
from tests.unit.federation.harness import make_plan, run_federation

PARAMS = {"model": "softmax", "optimizer": "sgd", "learning_rate": 0.1}


def _run(tmp_path: Path) -> tuple[Aggregator, dict[str, np.ndarray]]:
    plan = make_plan(tmp_path, {
        "aggregator": {"rounds_to_train": 3},
        "collaborator": {"epochs": 2, "batch_size": 32},
        "task_runner": {"name": "numpy", "params": PARAMS},
        "stragglers": {"min_collaborators": 3},
    })
    seed = plan.data.seed
    split = load_digits_federation(3, seed=seed)
    aggregator = Aggregator(plan, initial_weights=initial_weights("numpy", seed=seed, **PARAMS),
                            state_dir=tmp_path / "state", output_dir=tmp_path / "out")
    run_federation(plan, aggregator, timeout=120, make_runner=lambda name: create_runner(
        "numpy", split.shards[int(plan.shard_for(name))], seed=seed, **PARAMS))
    assert not aggregator.failed
    return aggregator, aggregator.weights()


def test_numpy_runner_federation_learns_and_is_bit_for_bit_reproducible(tmp_path: Path) -> None:
    # Execute
    first, weights = _run(tmp_path / "a")
    _, again = _run(tmp_path / "b")
    # Assert: the global model's validation accuracy, aggregated over the three shards, rises
    # from chance to well above it, and the held-out test set agrees.
    history = first.history
    accuracy = [h["metrics"]["aggregated_model_validation"]["accuracy"] for h in history]
    assert len(accuracy) == 4  # rounds 0..2 trained, then the final validation round
    assert accuracy[0] < 0.3  # the untrained model is near chance (0.1)
    assert accuracy[-1] > 0.85, accuracy
    assert accuracy[-1] > accuracy[0]
    split = load_digits_federation(3, seed=0)
    test = evaluate_weights("numpy", weights, split.x_test, split.y_test, **PARAMS)
    assert test["accuracy"] > 0.85, test
    # Two runs on the same seed give the same bits.
    assert sorted(weights) == sorted(again)
    for name, array in weights.items():
        assert array.dtype == again[name].dtype
        assert np.array_equal(array, again[name]), name
