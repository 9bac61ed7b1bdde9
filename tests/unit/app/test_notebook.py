"""The Python API: a Keras model object and NumPy arrays per site in, trained models out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import openfl_like


def test_the_public_surface_is_pinned_and_import_is_light() -> None:
    assert openfl_like.__all__ == ["FederationResult", "__version__", "federate"]
    code = ("import sys, openfl_like; "
            "print(any(m.split('.')[0] in ('grpc', 'tensorflow', 'keras') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.keras
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_federate_trains_a_keras_model_on_two_sites_arrays(tmp_path: Path) -> None:
    # Prepare: two sites of a linearly separable 2-class problem, a tiny Keras model
    import keras
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    x = ((x - x.mean(axis=0)) / x.std(axis=0)).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    test = (x[:100], y[:100])
    sites = {"site_a": (x[100:300], y[100:300]), "site_b": (x[300:], y[300:])}
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((30,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    rounds_seen: list[int] = []
    # Execute
    result = openfl_like.federate(model, sites, rounds=3, test=test, classes=["m", "b"],
                                  learning_rate=0.01, workdir=tmp_path,
                                  on_round=lambda r: rounds_seen.append(r["round"]))
    # Assert: the rounds were followed, the models came back as Keras models that reproduce
    # the reported held-out accuracy
    assert rounds_seen == [0, 1, 2, 3]
    assert isinstance(result.model, keras.Model) and isinstance(result.best_model, keras.Model)
    accuracy = float((result.model.predict(test[0], verbose=0).argmax(axis=1) == test[1]).mean())
    assert result.final_metrics["test_accuracy"] >= 0.9
    assert abs(accuracy - result.final_metrics["test_accuracy"]) < 1e-6
    assert set(result.collaborators) == {"site_a", "site_b"}
    assert (tmp_path / "plan" / "plan.yaml").is_file()  # the same plan `fx plan run` can take
