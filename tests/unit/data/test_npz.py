"""npz loader: default and custom keys, own validation arrays, no pickle, named refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from openfl_like.core.errors import DataError
from openfl_like.data.contract_check import check_dataset
from openfl_like.data.npz import load_npz
from openfl_like.plan.schema import DataContract

CONTRACT = DataContract(features=(4,), classes=("a", "b", "c"))


def _arrays(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)), rng.integers(0, 3, size=n)


def test_default_keys_with_own_validation(tmp_path: Path) -> None:
    # Prepare
    x, y = _arrays(12)
    xv, yv = _arrays(5, seed=1)
    path = tmp_path / "site.npz"
    np.savez(path, x_train=x, y_train=y, x_valid=xv, y_valid=yv)
    # Execute
    ds = load_npz({"path": str(path)}, CONTRACT)
    # Assert
    assert (ds.num_train, ds.num_valid) == (12, 5)
    assert ds.x_train.dtype == np.float32  # cast to the contract's dtype
    assert np.allclose(ds.x_valid, xv)
    assert not ds.x_train.flags.writeable
    check_dataset(ds, CONTRACT)
    assert ds.describe()["train"] == 12


def test_custom_keys_string_labels_and_fraction(tmp_path: Path) -> None:
    x, _ = _arrays(10)
    names = np.array(["a", "c"] * 5)
    path = tmp_path / "site.npz"
    np.savez(path, features=x, target=names)
    ds = load_npz({"path": str(path), "x_key": "features", "y_key": "target",
                   "valid_fraction": 0.3, "seed": 2}, CONTRACT)
    assert (ds.num_train, ds.num_valid) == (7, 3)
    assert set(np.concatenate([ds.y_train, ds.y_valid]).tolist()) == {0, 2}


def test_valid_path(tmp_path: Path) -> None:
    np.savez(tmp_path / "t.npz", x_train=_arrays(6)[0], y_train=_arrays(6)[1])
    np.savez(tmp_path / "v.npz", x_train=_arrays(2)[0], y_train=_arrays(2)[1])
    ds = load_npz({"path": str(tmp_path / "t.npz"), "valid_path": str(tmp_path / "v.npz")},
                  CONTRACT)
    assert (ds.num_train, ds.num_valid) == (6, 2)


def test_refuses_pickled_objects(tmp_path: Path) -> None:
    path = tmp_path / "evil.npz"
    np.savez(path, x_train=np.array([{"a": 1}], dtype=object), y_train=np.array([0]))
    with pytest.raises(DataError, match=r"evil\.npz: not a readable \.npz"):
        load_npz({"path": str(path)}, CONTRACT)


def test_missing_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "site.npz"
    np.savez(path, x=_arrays(3)[0], y_train=_arrays(3)[1])
    with pytest.raises(DataError, match=r"site\.npz: key 'x_train' missing \(found: x, y_train\)"):
        load_npz({"path": str(path)}, CONTRACT)


def test_explicit_valid_key_missing(tmp_path: Path) -> None:
    path = tmp_path / "site.npz"
    np.savez(path, x_train=_arrays(3)[0], y_train=_arrays(3)[1])
    with pytest.raises(DataError, match="key 'xv' missing"):
        load_npz({"path": str(path), "x_valid_key": "xv"}, CONTRACT)


def test_nan_rows_counted(tmp_path: Path) -> None:
    x, y = _arrays(8)
    x[1, 0] = np.nan
    x[5, 3] = np.inf
    path = tmp_path / "site.npz"
    np.savez(path, x_train=x, y_train=y)
    with pytest.raises(DataError, match=r"x_train: 2 row\(s\) have NaN or infinite features "
                                        r"\(first at row index 1\)"):
        load_npz({"path": str(path)}, CONTRACT)


def test_empty_and_corrupt(tmp_path: Path) -> None:
    np.savez(tmp_path / "e.npz", x_train=np.zeros((0, 4)), y_train=np.zeros(0, dtype=int))
    with pytest.raises(DataError, match=r"e\.npz: no samples"):
        load_npz({"path": str(tmp_path / "e.npz")}, CONTRACT)
    (tmp_path / "c.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"c\.npz: not a readable"):
        load_npz({"path": str(tmp_path / "c.npz")}, CONTRACT)


def test_labels_outside_class_list(tmp_path: Path) -> None:
    x, y = _arrays(6)
    y[2] = 7
    np.savez(tmp_path / "s.npz", x_train=x, y_train=y)
    ds = load_npz({"path": str(tmp_path / "s.npz"), "valid_fraction": 0.5, "seed": 0}, CONTRACT)
    with pytest.raises(DataError, match=r"s\.npz: y_(train|valid): 1 label\(s\) outside the "
                                        r"plan's 3 classes \(e\.g\. 7\)"):
        check_dataset(ds, CONTRACT)
    np.savez(tmp_path / "n.npz", x_train=x, y_train=np.array(["a", "z"] * 3))
    with pytest.raises(DataError, match=r"n\.npz: y_train\[1\]: label 'z' is not in the plan's"):
        load_npz({"path": str(tmp_path / "n.npz")}, CONTRACT)
