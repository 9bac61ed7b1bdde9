"""A user's .keras regression model (one float16 layer) through the in-process federation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

import keras

from openfl_like.app.common import runner_params
from openfl_like.federation import Aggregator
from openfl_like.runners.registry import create_runner, initial_weights, save_native_model
from tests.unit.federation.harness import make_plan, run_federation

pytestmark = pytest.mark.keras


class Shard:
    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(40, 4)).astype(np.float32)
        y = x @ np.array([1.0, -2.0, 0.5, 0.0], np.float32)
        self.x_train, self.y_train, self.x_valid, self.y_valid = x[:32], y[:32], x[32:], y[32:]


def test_user_regression_model_federates_keeps_dtypes_and_exports(tmp_path: Path) -> None:
    # Prepare: the model file sits in the plan folder; the best model is picked by mae
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="h", dtype="float16"),
                              keras.layers.Dense(1, name="y")], name="user_reg")
    (tmp_path / "plan").mkdir()
    model.save(tmp_path / "plan" / "init.keras")
    plan = make_plan(tmp_path, {
        "aggregator": {"rounds_to_train": 2, "best_model": {"metric": "mae", "direction": "min"}},
        "task_runner": {"name": "keras", "params": {
            "model": "init.keras", "loss": "mse", "metrics": "mae", "learning_rate": 0.01}},
    }, cols=("col1", "col2"))
    params = runner_params(plan)
    start = initial_weights("keras", seed=0, **params)
    aggregator = Aggregator(plan, initial_weights=start, state_dir=tmp_path / "state",
                            output_dir=tmp_path / "out")
    # Execute
    run_federation(plan, aggregator, timeout=120, make_runner=lambda name: create_runner(
        "keras", Shard(int(plan.shard_for(name))), seed=0, **params))
    best = save_native_model("keras", aggregator.best_weights(), tmp_path / "best_model.keras",
                             **params)
    # Assert
    assert not aggregator.failed
    final = aggregator.weights()
    assert final["h/kernel"].dtype == np.float16 and final["y/kernel"].dtype == np.float32
    maes = [h["metrics"]["aggregated_model_validation"]["mae"] for h in aggregator.history]
    assert len(maes) == 3 and min(maes) < maes[0]
    fresh = keras.saving.load_model(best, safe_mode=True, compile=False)
    expected = aggregator.best_weights()
    np.testing.assert_array_equal(fresh.get_layer("h").kernel.numpy(), expected["h/kernel"])
    np.testing.assert_array_equal(fresh.get_layer("y").bias.numpy(), expected["y/bias"])
