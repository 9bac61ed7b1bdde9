"""The Keras split model: two parties in two threads over the in-memory link learn digits;
state round-trips through a checkpoint; the saved halves load in safe mode."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from openfl_like.core.errors import DataError
from openfl_like.core.vertical import PartyRole
from openfl_like.plan.vertical_config import (
    SplitModelSettings,
    VerticalPlan,
    parse_vertical_plan,
)
from openfl_like.vertical.checkpoints import CheckpointMeta, CheckpointStore

pytestmark = pytest.mark.keras

keras_split = pytest.importorskip("openfl_like.vertical.keras_split")


def _plan(tmp_path: Path, epochs: int) -> VerticalPlan:
    doc = {"session_id": "test-session",
           "leader": {"name": "shop", "address": "127.0.0.1:1"},
           "follower": {"name": "bank", "address": "127.0.0.1:2"},
           "model": {"epochs": epochs, "batch_size": 64, "learning_rate": 0.02},
           "checkpoint": {"every_steps": 10, "keep": 2}}
    return parse_vertical_plan(doc, plan_file=tmp_path / "plan.yaml")


def _halves(plan: VerticalPlan) -> Callable[[PartyRole, int], Any]:
    return lambda role, n: (keras_split.LeaderHalf(plan.model, n) if role is PartyRole.LEADER
                            else keras_split.FollowerHalf(plan.model, n))


def test_keras_halves_learn_digits_and_a_resumed_pair_ends_where_an_uninterrupted_one_does(
        tmp_path: Path) -> None:
    from tests.unit.vertical.test_training import run_pair_with

    # Prepare: the uninterrupted reference (2 epochs), and a pair stopped after 1 epoch
    reference = run_pair_with(_plan(tmp_path / "a", 2), tmp_path / "a",
                              _halves(_plan(tmp_path / "a", 2)))
    first = _plan(tmp_path / "b", 1)
    run_pair_with(first, tmp_path / "b", _halves(first))
    # Execute: restarted for 2 epochs, from the newest common checkpoint (step 20 of 23)
    second = _plan(tmp_path / "b", 2)
    resumed = run_pair_with(second, tmp_path / "b", _halves(second))
    # Assert
    assert not reference.errors and not resumed.errors, (reference.errors, resumed.errors)
    accuracy = reference.results[PartyRole.LEADER].test_accuracy
    assert accuracy == reference.results[PartyRole.FOLLOWER].test_accuracy >= 0.85
    assert resumed.results[PartyRole.LEADER].resumed_from == 20
    assert resumed.results[PartyRole.LEADER].test_accuracy == accuracy
    for role in PartyRole:
        want, got = reference.halves[role].state(), resumed.halves[role].state()
        assert want.keys() == got.keys()
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{role.value} {name}")


def test_state_round_trip_and_safe_mode_files(tmp_path: Path) -> None:
    import keras

    settings = SplitModelSettings(embedding_dim=4, hidden_units=8)
    leader = keras_split.LeaderHalf(settings, 3)
    x = np.ones((2, 3), np.float32)
    loss, _, gradient = leader.train_step(x, np.array([1, 2]), np.zeros((2, 4), np.float32))
    assert gradient.shape == (2, 4) and np.isfinite(loss)
    state = leader.state()
    store = CheckpointStore(tmp_path / "ckpt", keep=2)
    store.save(CheckpointMeta(1, 0, 2), state)
    fresh = keras_split.LeaderHalf(settings, 3)
    fresh.restore(store.load(1)[1], source="test")  # through the file: 0-d arrays stay 0-d
    for name, value in fresh.state().items():
        np.testing.assert_array_equal(value, state[name])
    with pytest.raises(DataError, match="does not fit this plan's model"):
        keras_split.LeaderHalf(SplitModelSettings(embedding_dim=4, hidden_units=9), 3).restore(
            state, source="ckpt")
    with pytest.raises(DataError, match="embedding has shape"):
        leader.train_step(x, np.array([1, 2]), np.zeros((2, 5), np.float32))
    path = tmp_path / "leader.keras"
    leader.save_keras(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert len(loaded.inputs) == 2
    follower = keras_split.FollowerHalf(settings, 3)
    follower.forward(x)
    follower.backward(np.ones((2, 4), np.float32))
    follower.save_keras(tmp_path / "follower.keras")
    assert keras.saving.load_model(tmp_path / "follower.keras", safe_mode=True).output_shape \
        == (None, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "follower.keras",
                                                          "leader.keras"]
