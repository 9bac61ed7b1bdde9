"""KerasRunner on the digits: learning, weight names and checks, determinism, .keras export."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from openfl_like.core.errors import ConfigError, ProtocolError
from openfl_like.data.digits import load_digits_federation
from openfl_like.runners import keras_runner as kr
from openfl_like.runners.registry import create_runner, evaluate_weights

pytestmark = pytest.mark.keras


@pytest.fixture(scope="module")
def split():
    return load_digits_federation(3, seed=0)


@pytest.fixture(scope="module")
def trained(split):
    """A CNN runner after two local epochs, with its accuracy before training."""
    runner = kr.KerasRunner(split.shards[0], seed=0)
    before = runner.validate(batch_size=64)
    outcome = runner.train(epochs=2, batch_size=32)
    return runner, before, outcome


def test_short_training_improves_accuracy(trained, split) -> None:
    runner, before, outcome = trained
    after = runner.validate(batch_size=64)
    assert outcome.data_size == split.shards[0].num_train
    assert set(outcome.metrics) == {"loss", "accuracy"}
    assert before.metrics["accuracy"] < 0.3
    assert after.metrics["accuracy"] > 0.7
    assert after.metrics["loss"] < before.metrics["loss"]


def test_weight_names_are_layer_paths_independent_of_other_models(trained) -> None:
    runner, _, _ = trained
    kr.digits_cnn()  # another model in the process must not shift the names
    names = list(kr.KerasRunner(None).get_weights())
    assert names == list(runner.get_weights())
    assert names[:2] == ["conv1/kernel", "conv1/bias"]
    assert names[-2:] == ["logits/kernel", "logits/bias"]


def test_weights_round_trip_gives_the_same_predictions(trained, split) -> None:
    runner, _, _ = trained
    clone = kr.KerasRunner.from_weights(runner.get_weights(), seed=9)
    got = clone.get_weights()
    assert all(np.array_equal(got[k], v) for k, v in runner.get_weights().items())
    assert all(v.dtype == np.float32 for v in got.values())
    np.testing.assert_array_equal(clone.predict(split.x_test), runner.predict(split.x_test))
    assert clone.evaluate_arrays(split.x_test, split.y_test).metrics == pytest.approx(
        runner.evaluate_arrays(split.x_test, split.y_test).metrics
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda w: w.pop("fc/bias"), "missing fc/bias"),
        (lambda w: w.update({"fc/bias": np.zeros(3, np.float32)}), r"shape \(3,\)"),
        (lambda w: w.update({"fc/bias": np.zeros(128, np.float16)}), "dtype float16"),
    ],
)
def test_mismatched_weights_are_refused(trained, mutate, message: str) -> None:
    runner, _, _ = trained
    bad = runner.get_weights()
    mutate(bad)
    with pytest.raises(ProtocolError, match=message):
        runner.set_weights(bad)


def test_training_is_reproducible_from_the_same_weights(split) -> None:
    # Prepare: one runner with history, one fresh; both start from the same global weights
    a = kr.KerasRunner(split.shards[1], seed=5, builder="digits_mlp")
    a.train(epochs=1, batch_size=64)
    start = a.get_weights()
    a.train(epochs=1, batch_size=64)
    b = kr.KerasRunner(split.shards[1], seed=5, builder="digits_mlp")
    # Execute
    a.set_weights(start)
    b.set_weights(start)
    out_a, out_b = a.train(epochs=1, batch_size=64), b.train(epochs=1, batch_size=64)
    # Assert
    wa, wb = a.get_weights(), b.get_weights()
    assert all(wa[k].tobytes() == wb[k].tobytes() for k in wa)
    assert out_a.metrics == out_b.metrics


def test_save_and_load_keras_file_gives_the_same_predictions(trained, split, tmp_path) -> None:
    import keras

    runner, _, _ = trained
    path = kr.save_keras_model(runner.get_weights(), tmp_path / "final.keras")
    assert path.exists() and list(tmp_path.iterdir()) == [path]  # no partial file left
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        np.asarray(loaded(split.x_test, training=False)), runner.predict(split.x_test), rtol=1e-6
    )
    weights = kr.load_keras_weights(path)
    assert all(np.array_equal(weights[k], v) for k, v in runner.get_weights().items())


def test_save_refuses_another_suffix(trained, tmp_path) -> None:
    runner, _, _ = trained
    with pytest.raises(ConfigError, match=r"must end in \.keras"):
        runner.save(tmp_path / "model.h5")


def test_custom_builders_need_permission() -> None:
    name = "openfl_like.runners.keras_runner:digits_mlp"
    with pytest.raises(ConfigError, match="does not allow"):
        kr.KerasRunner(None, builder=name)
    with pytest.raises(ConfigError, match="unknown model builder 'resnet'"):
        kr.KerasRunner(None, builder="resnet")
    with pytest.raises(ConfigError, match="cannot load"):
        kr.KerasRunner(None, builder="no_such_module:f", allow_custom=True)
    runner = kr.KerasRunner(None, builder=name, allow_custom=True)
    assert "fc1/kernel" in runner.get_weights()


def test_registry_builds_and_evaluates_keras(trained, split) -> None:
    runner, _, _ = trained
    created = create_runner("keras", split.shards[2], seed=1, builder="digits_mlp")
    assert "fc2/kernel" in created.get_weights()
    metrics = evaluate_weights("keras", runner.get_weights(), split.x_test, split.y_test)
    assert metrics["accuracy"] == pytest.approx(
        runner.evaluate_arrays(split.x_test, split.y_test).metrics["accuracy"]
    )
