"""The runner registry: explicit names, parameter checks, lazy TensorFlow."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from openfl_like.core.errors import ConfigError
from openfl_like.data.digits import load_digits_federation
from openfl_like.runners.registry import (
    create_runner,
    evaluate_weights,
    initial_weights,
    known_runner_names,
    runner_params,
)


def test_known_names() -> None:
    assert known_runner_names() == ("keras", "noop", "numpy")


def test_unknown_runner_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown runner 'torch'; known: keras, noop, numpy"):
        create_runner("torch", None)


def test_unknown_parameter_names_what_is_accepted() -> None:
    with pytest.raises(ConfigError, match="layers not understood by the 'numpy' runner"):
        create_runner("numpy", None, layers=3)
    assert "hidden_units" in runner_params("numpy")


def test_create_train_and_evaluate_through_the_registry() -> None:
    split = load_digits_federation(2, seed=1)
    runner = create_runner("numpy", split.shards[0], seed=1, model="mlp", hidden_units=32)
    start = initial_weights("numpy", seed=1, model="mlp", hidden_units=32)
    assert all(np.array_equal(start[k], v) for k, v in runner.get_weights().items())
    before = evaluate_weights("numpy", start, split.x_test, split.y_test)
    runner.train(epochs=3, batch_size=32)
    after = evaluate_weights("numpy", runner.get_weights(), split.x_test, split.y_test)
    assert set(after) == {"loss", "accuracy"}
    assert after["accuracy"] > before["accuracy"] + 0.5


def test_noop_through_the_registry() -> None:
    runner = create_runner("noop", None, size_mib=0.5, num_tensors=2)
    assert sum(w.nbytes for w in runner.get_weights().values()) == 2**19
    x = np.zeros((3, 64), np.float32)
    assert evaluate_weights("noop", runner.get_weights(), x, np.zeros(3, np.int64)) == {
        "loss": 0.0,
        "accuracy": 0.0,
    }


def test_numpy_and_noop_runners_import_neither_tensorflow_nor_sklearn() -> None:
    code = (
        "import sys\n"
        "from openfl_like.runners.registry import create_runner\n"
        "from openfl_like.data.digits import load_digits_shard\n"
        "r = create_runner('numpy', load_digits_shard(0, 2))\n"
        "r.train(epochs=1, batch_size=32)\n"
        "create_runner('noop', None)\n"
        "assert not {'tensorflow', 'keras', 'sklearn'} & set(sys.modules), 'heavy import'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
