"""Loader registry, digits wrapper, LocalDataset as ShardLike, and check_dataset refusals."""

from __future__ import annotations

import numpy as np
import pytest

from openfl_like.core.errors import DataError
from openfl_like.data.contract_check import check_dataset
from openfl_like.data.dataset import make_dataset
from openfl_like.data.local import LOADERS, load_local_dataset
from openfl_like.plan.local_data import LOADER_PARAMS
from openfl_like.plan.schema import DataContract
from openfl_like.runners.common import ShardLike, shard_sample_counts

DIGITS = DataContract(features=(64,), classes=tuple(str(i) for i in range(10)))


def test_registry_matches_the_plan_layer_table() -> None:
    assert set(LOADERS) == set(LOADER_PARAMS) == {"digits", "digits_test", "npz", "csv",
                                                  "image_folder"}


def test_digits_test_is_the_held_out_split_in_order() -> None:
    from openfl_like.data.digits import load_digits_test_set

    ds = load_local_dataset("digits_test", {}, contract=DIGITS)
    check_dataset(ds, DIGITS)
    x, y = load_digits_test_set()
    np.testing.assert_array_equal(np.concatenate([ds.x_train, ds.x_valid]), x)
    np.testing.assert_array_equal(np.concatenate([ds.y_train, ds.y_valid]), y)


def test_digits_shard_fits_its_contract_and_runners() -> None:
    ds = load_local_dataset("digits", {"shard": 1, "num_shards": 3}, contract=DIGITS)
    check_dataset(ds, DIGITS)
    shard: ShardLike = ds
    counts = shard_sample_counts(shard)
    assert counts["train"] > 300 and counts["valid"] > 30
    assert sum(ds.class_counts(10)) == counts["train"]


def test_unknown_loader() -> None:
    with pytest.raises(DataError, match="unknown data loader 'parquet'"):
        load_local_dataset("parquet", {}, contract=None)


def _ds(x: np.ndarray, y: np.ndarray, xv: np.ndarray | None = None,
        yv: np.ndarray | None = None) -> object:
    valid = (x if xv is None else xv, y if yv is None else yv)
    return make_dataset({}, (x, y), valid, source="data/site_b.npz", loader="npz")


@pytest.mark.parametrize("x, y, message", [
    (np.zeros((3, 30), np.float32), np.zeros(3, np.int64),
     r"data/site_b\.npz: x_train: shape \(n, 30\), the plan expects \(n, 31\)"),
    (np.zeros((3, 31), np.float64), np.zeros(3, np.int64),
     "x_train: dtype float64, the plan expects float32"),
    (np.zeros((3, 31), np.float32), np.zeros(3, np.float32),
     "y_train: class labels must be integers"),
    (np.zeros((3, 31), np.float32), np.array([0, 1, -1]),
     r"y_train: 1 label\(s\) outside the plan's 2 classes \(e\.g\. -1\)"),
    (np.zeros((3, 31), np.float32), np.zeros((3, 2), np.int64),
     r"y_train: shape \(3, 2\), expected \(3,\)"),
])
def test_check_dataset_refusals(x: np.ndarray, y: np.ndarray, message: str) -> None:
    contract = DataContract(features=(31,), classes=("no", "yes"))
    with pytest.raises(DataError, match=message):
        check_dataset(_ds(x, y), contract)  # type: ignore[arg-type]


def test_check_dataset_regression() -> None:
    contract = DataContract(features=(2,), label="regression")
    good = _ds(np.zeros((2, 2), np.float32), np.array([0.5, 1.0], np.float32))
    check_dataset(good, contract)  # type: ignore[arg-type]
    bad = _ds(np.zeros((2, 2), np.float32), np.array([0.5, np.nan], np.float32))
    with pytest.raises(DataError, match="regression targets must be finite"):
        check_dataset(bad, contract)  # type: ignore[arg-type]


def test_mismatched_counts_and_tiny_sets() -> None:
    with pytest.raises(DataError, match="x_valid has 2 samples, y_valid has 1"):
        make_dataset({}, (np.zeros((2, 1)), np.zeros(2)), (np.zeros((2, 1)), np.zeros(1)),
                     source="s", loader="npz")
    with pytest.raises(DataError, match="s: 1 sample"):
        make_dataset({}, (np.zeros((1, 1)), np.zeros(1)), None, source="s", loader="npz")
