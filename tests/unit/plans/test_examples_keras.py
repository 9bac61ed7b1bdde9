"""The ready examples' model part: make_data.py's model.keras loads in the Keras runner with the
plan's params and trains one epoch on a site's data as its description reads it."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("sklearn")

from openfl_like.app.data import load_site_data
from openfl_like.plan.load import load_plan
from openfl_like.plan.local_data import load_local_data_spec
from openfl_like.runners.registry import create_runner
from tests.unit.plans.conftest import EXAMPLES, copy_plan, load_make_data

pytestmark = [pytest.mark.keras, pytest.mark.slow]


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_model_trains_one_epoch_on_site_data(example: str, tmp_path) -> None:
    # Prepare
    if example == "keras_images":
        pytest.importorskip("PIL")
    make_data = load_make_data(example)
    plan_dir = copy_plan(example, tmp_path)
    make_data.write_data(plan_dir, seed=0)
    assert make_data.write_model(plan_dir / "model.keras", seed=0)
    assert not make_data.write_model(plan_dir / "model.keras", seed=0)  # kept, digest unchanged
    plan = load_plan(plan_dir)
    dataset = load_site_data(plan, load_local_data_spec(plan_dir / str(plan.shard_for("site_b"))))
    # Execute
    runner = create_runner("keras", dataset, plan_dir=str(plan_dir), **plan.task_runner.params)
    start = runner.get_weights()
    outcome = runner.train(epochs=1, batch_size=plan.collaborator.batch_size)
    valid = runner.validate(batch_size=64)
    # Assert
    assert outcome.data_size == dataset.num_train and valid.data_size == dataset.num_valid
    assert set(outcome.metrics) == {"loss", "accuracy"}
    assert np.isfinite(valid.metrics["loss"])
    assert any(not np.array_equal(runner.get_weights()[k], v) for k, v in start.items())
