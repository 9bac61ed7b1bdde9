"""NumpyRunner and NoopRunner: learning, exact reproducibility, weight checks."""

from __future__ import annotations

import numpy as np
import pytest

from openfl_like.core.errors import ConfigError, ProtocolError
from openfl_like.data.digits import load_digits_federation
from openfl_like.runners.base import TaskRunner
from openfl_like.runners.numpy_runner import NoopRunner, NumpyRunner


@pytest.fixture(scope="module")
def split():
    return load_digits_federation(3, seed=0)


@pytest.mark.parametrize("model", ["softmax", "mlp"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_training_reduces_loss_and_beats_chance(split, model: str, optimizer: str) -> None:
    # Prepare
    lr = 0.1 if optimizer == "sgd" else 0.01
    runner = NumpyRunner(split.shards[0], model=model, optimizer=optimizer, learning_rate=lr)
    before = runner.validate(batch_size=64)
    # Execute
    outcome = runner.train(epochs=5, batch_size=32)
    after = runner.validate(batch_size=64)
    # Assert
    assert outcome.data_size == split.shards[0].num_train
    assert after.metrics["loss"] < 0.5 * before.metrics["loss"]
    assert after.metrics["accuracy"] > 0.85
    assert runner.evaluate_arrays(split.x_test, split.y_test).metrics["accuracy"] > 0.85


def test_gradients_match_finite_differences(split) -> None:
    runner = NumpyRunner(split.shards[0], model="mlp", hidden_units=8, seed=3)
    x = split.shards[0].x_train[:16].astype(np.float64)
    y = split.shards[0].y_train[:16]
    runner._w = {k: v.astype(np.float64) for k, v in runner._w.items()}
    _, _, grads = runner._loss_and_grads(x, y)
    rng = np.random.default_rng(0)
    for name in ("hidden/kernel", "dense/bias"):
        idx = tuple(rng.integers(0, s) for s in runner._w[name].shape)
        eps = 1e-6
        runner._w[name][idx] += eps
        plus = runner._loss_and_grads(x, y)[0].mean()
        runner._w[name][idx] -= 2 * eps
        minus = runner._loss_and_grads(x, y)[0].mean()
        runner._w[name][idx] += eps
        assert grads[name][idx] == pytest.approx((plus - minus) / (2 * eps), rel=1e-4, abs=1e-7)


def test_training_is_bit_for_bit_reproducible_and_history_free(split) -> None:
    # Prepare: one runner with a history of other rounds, one fresh, same incoming weights
    seasoned = NumpyRunner(split.shards[1], model="mlp", seed=4)
    seasoned.train(epochs=1, batch_size=16)
    global_weights = seasoned.get_weights()
    seasoned.train(epochs=2, batch_size=16)
    fresh = NumpyRunner(split.shards[1], model="mlp", seed=4)
    # Execute
    seasoned.set_weights(global_weights)
    fresh.set_weights(global_weights)
    out_a = seasoned.train(epochs=2, batch_size=16)
    out_b = fresh.train(epochs=2, batch_size=16)
    # Assert
    a, b = seasoned.get_weights(), fresh.get_weights()
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)
    assert out_a.metrics == out_b.metrics


def test_different_seeds_shuffle_differently(split) -> None:
    a = NumpyRunner(split.shards[0], seed=1)
    b = NumpyRunner(split.shards[0], seed=2)
    b.set_weights(a.get_weights())
    a.train(epochs=1, batch_size=16)
    b.train(epochs=1, batch_size=16)
    assert not np.array_equal(a.get_weights()["dense/kernel"], b.get_weights()["dense/kernel"])


def test_weights_round_trip_and_keep_names_dtypes_and_independence(split) -> None:
    runner = NumpyRunner(split.shards[0], model="mlp", hidden_units=16)
    weights = runner.get_weights()
    assert list(weights) == ["hidden/kernel", "hidden/bias", "dense/kernel", "dense/bias"]
    assert all(w.dtype == np.float32 for w in weights.values())
    changed = {k: v + np.float32(1) for k, v in weights.items()}
    runner.set_weights(changed)
    changed["dense/bias"][:] = 99  # the runner holds its own copy
    got = runner.get_weights()
    assert np.array_equal(got["hidden/kernel"], weights["hidden/kernel"] + 1)
    assert np.array_equal(got["dense/bias"], weights["dense/bias"] + 1)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda w: w.pop("dense/bias"), "missing dense/bias"),
        (lambda w: w.update({"extra": np.zeros(1, np.float32)}), "unexpected extra"),
        (lambda w: w.update({"dense/bias": np.zeros(11, np.float32)}), r"shape \(11,\)"),
        (lambda w: w.update({"dense/bias": np.zeros(10, np.float64)}), "dtype float64"),
    ],
)
def test_mismatched_weights_are_refused_and_leave_the_model_intact(
    split, mutate, message: str
) -> None:
    runner = NumpyRunner(split.shards[0])
    before = runner.get_weights()
    bad = runner.get_weights()
    mutate(bad)
    with pytest.raises(ProtocolError, match=message):
        runner.set_weights(bad)
    assert all(np.array_equal(before[k], v) for k, v in runner.get_weights().items())


def test_from_weights_reads_the_architecture_and_evaluates_like_the_trained_runner(split) -> None:
    runner = NumpyRunner(split.shards[2], model="mlp", hidden_units=24)
    runner.train(epochs=3, batch_size=32)
    clone = NumpyRunner.from_weights(runner.get_weights())
    assert clone.spec.model == "mlp" and clone.spec.hidden_units == 24
    assert clone.evaluate_arrays(split.x_test, split.y_test) == runner.evaluate_arrays(
        split.x_test, split.y_test
    )
    assert np.allclose(clone.predict(split.x_test[:5]).sum(axis=1), 1.0)


def test_model_only_runner_cannot_train() -> None:
    with pytest.raises(ConfigError, match="needs a data shard"):
        NumpyRunner(None).train(epochs=1, batch_size=8)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": "resnet"}, "unknown numpy model"),
        ({"optimizer": "lbfgs"}, "unknown 'lbfgs'"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"hidden_units": 0}, "hidden_units"),
    ],
)
def test_bad_settings_are_config_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        NumpyRunner(None, **kwargs)


def test_bad_train_arguments_are_config_errors(split) -> None:
    runner = NumpyRunner(split.shards[0])
    with pytest.raises(ConfigError, match="epochs"):
        runner.train(epochs=0, batch_size=8)
    with pytest.raises(ConfigError, match="batch_size"):
        runner.validate(batch_size=0)


def test_runners_satisfy_the_task_runner_protocol(split) -> None:
    runners: list[TaskRunner] = [NumpyRunner(split.shards[0]), NoopRunner(split.shards[0])]
    for runner in runners:
        assert {"loss", "accuracy"} <= set(runner.train(epochs=1, batch_size=32).metrics)
        assert {"loss", "accuracy"} <= set(runner.validate(batch_size=32).metrics)


def test_noop_runner_has_the_requested_size_and_does_not_copy() -> None:
    runner = NoopRunner(None, size_mib=3.0, num_tensors=3)
    weights = runner.get_weights()
    assert sum(w.nbytes for w in weights.values()) == 3 * 2**20
    assert all(w.dtype == np.float32 for w in weights.values())
    first = weights["noop/tensor_0"]
    expected = (np.arange(first.size) % 97).astype(np.float32) * np.float32(1e-3)
    np.testing.assert_array_equal(first, expected)  # deterministic, not all zeros
    incoming = {k: np.ones_like(v) for k, v in weights.items()}
    runner.set_weights(incoming)
    held = runner.get_weights()
    assert all(np.shares_memory(held[k], incoming[k]) for k in incoming)
    assert not held["noop/tensor_0"].flags.writeable


def test_noop_train_is_identity_or_a_fixed_delta() -> None:
    same = NoopRunner(None, size_mib=0.01, data_size=7)
    before = same.get_weights()
    outcome = same.train(epochs=1, batch_size=1)
    assert outcome.data_size == 7 and outcome.metrics == {"loss": 0.0, "accuracy": 0.0}
    assert all(same.get_weights()[k] is before[k] for k in before)
    shifted = NoopRunner(None, size_mib=0.01, delta=0.5)
    start = shifted.get_weights()
    shifted.train(epochs=1, batch_size=1)
    assert all(np.array_equal(shifted.get_weights()[k], start[k] + 0.5) for k in start)


@pytest.mark.parametrize("model", ["softmax", "mlp"])
def test_any_tabular_width_and_class_count(model: str) -> None:
    # Prepare: 30 features, 3 separable classes
    rng = np.random.default_rng(1)
    centers = rng.normal(scale=3.0, size=(3, 30)).astype(np.float32)
    y = rng.integers(0, 3, size=120)
    x = centers[y] + rng.normal(size=(120, 30)).astype(np.float32)

    class Shard:
        x_train, y_train, x_valid, y_valid = x[:100], y[:100], x[100:], y[100:]

    runner = NumpyRunner(Shard(), model=model, input_dim=30, num_classes=3, learning_rate=0.05)
    # Execute
    runner.train(epochs=3, batch_size=16)
    valid = runner.validate(batch_size=16)
    clone = NumpyRunner.from_weights(runner.get_weights())
    # Assert
    assert runner.get_weights()["dense/kernel"].shape[1] == 3
    assert valid.metrics["accuracy"] > 0.9
    assert clone.spec.input_dim == 30 and clone.spec.num_classes == 3
    assert clone.predict(x[:4]).shape == (4, 3)
    with pytest.raises(ConfigError, match=r"expected shape \(n, 30\)"):
        runner.evaluate_arrays(x[:, :29], y)
