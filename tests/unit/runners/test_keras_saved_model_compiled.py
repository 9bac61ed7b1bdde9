"""A saved .keras model is compiled with the plan's settings: load_model(path).evaluate works and
reproduces the runner's own evaluation; the file still passes the model-file checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from openfl_like.data.digits import load_digits_federation  # noqa: E402
from openfl_like.runners.keras_settings import check_keras_file  # noqa: E402
from openfl_like.runners.registry import create_runner, save_native_model  # noqa: E402

PARAMS = {"builder": "digits_mlp", "optimizer": "rmsprop", "learning_rate": 0.01}


def test_saved_model_evaluates_after_load_model(tmp_path: Path) -> None:
    # Prepare: a runner trained for one epoch, and its own evaluation of the test set.
    split = load_digits_federation(2, seed=0)
    runner = create_runner("keras", split.shards[0], seed=0, **PARAMS)
    runner.train(epochs=1, batch_size=32)
    expected = runner.evaluate_arrays(split.x_test, split.y_test).metrics
    # Execute: save through the registry (what the aggregator does for final_model.keras).
    path = save_native_model("keras", runner.get_weights(), tmp_path / "final_model.keras",
                             seed=0, **PARAMS)
    assert path is not None
    check_keras_file(path)  # a saved model can be the initial model of another plan
    loaded = keras.models.load_model(path)  # safe mode, compiled
    scores = loaded.evaluate(split.x_test, split.y_test, verbose=0, return_dict=True)
    # Assert: the plan's optimizer, loss and metric, and the runner's own numbers.
    assert type(loaded.optimizer).__name__ == "RMSprop"
    assert float(loaded.optimizer.learning_rate) == pytest.approx(0.01)
    assert scores["loss"] == pytest.approx(expected["loss"], rel=1e-4)
    accuracy = scores.get("accuracy", scores.get("compile_metrics"))
    assert accuracy == pytest.approx(expected["accuracy"], abs=1e-6), scores
    assert 0.2 < expected["accuracy"] <= 1.0  # trained: better than chance (0.1)
    predictions = loaded.predict(split.x_test[:5], verbose=0)
    assert np.allclose(predictions, runner.predict(split.x_test[:5]), atol=1e-5)
