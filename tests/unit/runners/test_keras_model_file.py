"""KerasRunner with a user's .keras file: loading, refusals, dtypes, regression, export."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

import keras

from openfl_like.core.errors import ConfigError
from openfl_like.runners import keras_runner as kr
from openfl_like.runners.registry import create_runner, initial_weights, save_native_model

pytestmark = pytest.mark.keras


@dataclass(frozen=True)
class Shard:
    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray


def _shard(*, width: int, classes: int | None, n: int = 48) -> Shard:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, width)).astype(np.float32)
    if classes is None:
        y = (x @ rng.normal(size=width)).astype(np.float32)
    else:
        y = rng.integers(0, classes, size=n)
    return Shard(x[: n - 8], y[: n - 8], x[n - 8 :], y[n - 8 :])


def _save(model: keras.Model, path: Path) -> Path:
    model.save(path)
    return path


def _classifier(width: int = 6, classes: int = 3, *, hidden_dtype: str = "float32") -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((width,), name="features"),
            keras.layers.Dense(8, activation="relu", name="hidden", dtype=hidden_dtype),
            keras.layers.Dense(classes, activation="softmax", name="probs"),
        ],
        name="user_clf",
    )


def _regressor(width: int = 5) -> keras.Model:
    return keras.Sequential(
        [keras.Input((width,)), keras.layers.Dense(4, name="h"), keras.layers.Dense(1, name="y")],
        name="user_reg",
    )


def test_model_file_relative_to_the_plan_folder_loads_and_trains(tmp_path) -> None:
    # Prepare
    saved = _classifier()
    _save(saved, tmp_path / "init.keras")
    shard = _shard(width=6, classes=3)
    # Execute
    runner = create_runner("keras", shard, model="init.keras", plan_dir=str(tmp_path),
                           optimizer="sgd", learning_rate=0.05)
    start = runner.get_weights()
    outcome = runner.train(epochs=1, batch_size=16)
    valid = runner.validate(batch_size=16)
    # Assert: the file's weights are the starting point, names are layer paths
    assert list(start) == ["hidden/kernel", "hidden/bias", "probs/kernel", "probs/bias"]
    np.testing.assert_array_equal(start["hidden/kernel"], saved.get_layer("hidden").kernel.numpy())
    assert set(outcome.metrics) == set(valid.metrics) == {"loss", "accuracy"}
    assert outcome.data_size == 40 and valid.data_size == 8
    assert not np.array_equal(runner.get_weights()["probs/kernel"], start["probs/kernel"])
    initial = initial_weights("keras", model="init.keras", plan_dir=str(tmp_path))
    assert all(np.array_equal(initial[k], v) for k, v in start.items())


def test_lambda_layer_is_refused_naming_file_and_layer(tmp_path) -> None:
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Lambda(lambda t: t * 2, name="doubler"),
         keras.layers.Dense(2, name="out")]
    )
    path = _save(model, tmp_path / "lam.keras")
    with pytest.raises(ConfigError, match=r"lam\.keras: layer 'doubler' is a Lambda layer") as err:
        kr.KerasRunner(None, model=str(path))
    assert "\n" not in str(err.value)


def test_custom_object_is_refused_naming_the_layer(tmp_path) -> None:
    def my_activation(t):  # a plain function: Keras serialises it as a custom object
        return t

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation=my_activation,
                                                                   name="odd")])
    path = _save(model, tmp_path / "custom.keras")
    with pytest.raises(ConfigError, match=r"custom\.keras: layer 'odd' needs the custom object"):
        kr.KerasRunner(None, model=str(path))


def test_missing_model_file_and_model_with_builder_are_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match="is not a file"):
        kr.KerasRunner(None, model="nope.keras", plan_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="model or builder"):
        kr.KerasRunner(None, model="nope.keras", builder="digits_mlp")


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_layer_keeps_its_dtype_end_to_end(tmp_path, dtype: str) -> None:
    path = _save(_classifier(hidden_dtype=dtype), tmp_path / f"{dtype}.keras")
    runner = kr.KerasRunner(_shard(width=6, classes=3), model=str(path))
    runner.train(epochs=1, batch_size=16)
    weights = runner.get_weights()
    assert str(weights["hidden/kernel"].dtype) == dtype
    assert weights["probs/kernel"].dtype == np.float32
    clone = kr.KerasRunner.from_weights(weights, model=str(path))
    got = clone.get_weights()
    assert str(got["hidden/kernel"].dtype) == dtype
    assert all(np.array_equal(got[k], v) for k, v in weights.items())


def test_regression_model_trains_and_validates_with_mse(tmp_path) -> None:
    path = _save(_regressor(), tmp_path / "reg.keras")
    shard = _shard(width=5, classes=None)
    runner = kr.KerasRunner(shard, model=str(path), loss="mse", metrics="mae", learning_rate=0.01)
    before = runner.validate(batch_size=8)
    outcome = runner.train(epochs=1, batch_size=8)
    after = runner.validate(batch_size=8)
    assert set(outcome.metrics) == set(after.metrics) == {"loss", "mae"}
    assert after.metrics["loss"] < before.metrics["loss"]
    # task: regression alone gives mse and no metric
    plain = kr.KerasRunner(shard, model=str(path), task="regression")
    assert plain.settings.loss == "mean_squared_error"
    assert set(plain.validate(batch_size=8).metrics) == {"loss"}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"loss": "hinge_of_doom"}, "loss"),
        ({"metrics": "auc"}, "metrics"),
        ({"loss": "mse", "metrics": "accuracy"}, "accuracy needs a classification loss"),
        ({"task": "ranking"}, "task"),
    ],
)
def test_bad_compile_settings_are_refused(params, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        kr.KerasRunner(None, builder="digits_mlp", **params)


def test_final_model_keeps_the_user_architecture_and_weights(tmp_path) -> None:
    # Prepare: weights different from the file's initial ones
    path = _save(_regressor(), tmp_path / "reg.keras")
    runner = kr.KerasRunner(_shard(width=5, classes=None), model=str(path), task="regression")
    runner.train(epochs=1, batch_size=8)
    trained = runner.get_weights()
    # Execute: the aggregator's export path
    out = save_native_model("keras", trained, tmp_path / "out" / "final_model.keras",
                            model="reg.keras", plan_dir=str(tmp_path), task="regression")
    # Assert
    fresh = keras.saving.load_model(out, safe_mode=True, compile=False)
    assert fresh.name == "user_reg"
    assert [layer.name for layer in fresh.layers] == ["h", "y"]
    assert kr.load_keras_weights(out).keys() == trained.keys()
    for name, value in kr.load_keras_weights(out).items():
        np.testing.assert_array_equal(value, trained[name])


def test_site_data_not_fitting_the_model_input_is_refused_at_start(tmp_path) -> None:
    path = _save(_classifier(width=6), tmp_path / "clf.keras")
    with pytest.raises(ConfigError, match=r"x_train samples of shape \(5\) do not fit the input "
                                          r"\(6\) of the model"):
        kr.KerasRunner(_shard(width=5, classes=3), model=str(path))


def test_regression_targets_must_be_finite_and_classification_integer(tmp_path) -> None:
    path = _save(_regressor(width=5), tmp_path / "reg.keras")
    shard = _shard(width=5, classes=None)
    runner = kr.KerasRunner(shard, model=str(path), task="regression")
    bad = shard.y_valid.copy()
    bad[0] = np.nan
    with pytest.raises(ConfigError, match="finite"):
        runner.evaluate_arrays(shard.x_valid, bad)
    clf = kr.KerasRunner(_shard(width=6, classes=3), model=str(
        _save(_classifier(width=6), tmp_path / "clf.keras")))
    with pytest.raises(ConfigError, match="integer labels"):
        clf.evaluate_arrays(np.zeros((2, 6), np.float32), np.array([0.5, 1.0]))
