"""csv loader: columns by name, labels through the class list, every refusal names file and row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from openfl_like.core.errors import DataError
from openfl_like.data.contract_check import check_dataset
from openfl_like.data.csv_loader import load_csv
from openfl_like.plan.schema import DataContract
from tests.unit.data.conftest import good_rows, write_csv

HEADER = ["id", "density", "age", "size", "diagnosis"]


def _rows(n: int) -> list[list[object]]:
    # Columns in a different order than the contract's, plus an id column that is not a feature.
    return [[i, r[2], r[0], r[1], r[3]] for i, r in enumerate(good_rows(n))]


def test_reads_named_columns_in_contract_order(tmp_path: Path, tabular: DataContract) -> None:
    # Prepare
    rows = _rows(10)
    path = write_csv(tmp_path / "site.csv", HEADER, rows)
    # Execute
    ds = load_csv({"path": str(path), "valid_fraction": 0.2, "seed": 1}, tabular)
    # Assert
    assert (ds.num_train, ds.num_valid) == (8, 2)
    x = np.concatenate([ds.x_train, ds.x_valid])
    y = np.concatenate([ds.y_train, ds.y_valid])
    assert x.dtype == np.float32 and x.shape == (10, 3)
    # Each loaded row is (age, size, density) of a written row, with its label mapped by name.
    written = {round(float(r[2]), 3): (float(r[3]), float(r[1]), r[4]) for r in rows}
    for (age, size, density), label in zip(x.tolist(), y.tolist(), strict=True):
        w_size, w_density, name = written[round(age, 3)]
        assert (size, density) == pytest.approx((w_size, w_density), abs=1e-3)
        assert label == ("benign", "malignant").index(name)
    check_dataset(ds, tabular)


def test_split_is_deterministic_by_seed(tmp_path: Path, tabular: DataContract) -> None:
    path = write_csv(tmp_path / "site.csv", HEADER, _rows(20))
    a = load_csv({"path": str(path), "seed": 3}, tabular)
    b = load_csv({"path": str(path), "seed": 3}, tabular)
    c = load_csv({"path": str(path), "seed": 4}, tabular)
    assert np.array_equal(a.x_valid, b.x_valid)
    assert not np.array_equal(a.x_valid, c.x_valid)
    assert a.num_valid == 4  # default valid_fraction 0.2


def test_glob_and_valid_path(tmp_path: Path, tabular: DataContract) -> None:
    write_csv(tmp_path / "part-1.csv", HEADER, _rows(4))
    write_csv(tmp_path / "part-2.csv", HEADER, _rows(6))
    valid = write_csv(tmp_path / "valid.csv", HEADER, _rows(3))
    ds = load_csv({"path": str(tmp_path / "part-*.csv"), "valid_path": str(valid)}, tabular)
    assert (ds.num_train, ds.num_valid) == (10, 3)


def test_all_columns_but_label_without_contract_columns(tmp_path: Path) -> None:
    contract = DataContract(features=(2,), classes=("0", "1"))
    path = write_csv(tmp_path / "s.csv", ["a", "label", "b"], [[1, 0, 2], [3, 1, 4], [5, 1, 6]])
    ds = load_csv({"path": str(path), "valid_fraction": 0.34}, contract)
    assert sorted(np.concatenate([ds.x_train, ds.x_valid])[:, 1].tolist()) == [2, 4, 6]


def test_regression_labels(tmp_path: Path) -> None:
    contract = DataContract(features=(1,), label="regression")
    path = write_csv(tmp_path / "s.csv", ["a", "label"], [[1, 0.5], [2, 1.5], [3, 2.5]])
    ds = load_csv({"path": str(path)}, contract)
    assert ds.y_train.dtype == np.float32
    check_dataset(ds, contract)


@pytest.mark.parametrize("header, rows, message", [
    (["id", "density", "size", "diagnosis"], [[0, 1, 2, "benign"]], "column 'age' missing"),
    (["age", "size", "density"], [[1, 2, 3]], "column 'diagnosis' missing"),
    (HEADER, [[0, 1, "x7", 2, "benign"]], "row 2: column 'age': not a number ('x7')"),
    (HEADER, [[0, 1, 2, 3, "benign"], [1, 1, 2, 3, "sick"]],
     "row 3: label 'sick' is not in the plan's classes (benign, malignant)"),
    (HEADER, [[0, 1, 2, 3]], "row 2: 4 cells, the header has 5"),
    (HEADER, [], "no samples"),
    (HEADER, [[0, 1, "nan", 3, "benign"], [1, 1, "inf", 3, "benign"], [2, 1, 2, 3, "benign"]],
     "2 row(s) have NaN or infinite features"),
])
def test_refusals_name_file_and_place(tmp_path: Path, tabular: DataContract, header: list[str],
                                      rows: list[list[object]], message: str) -> None:
    path = write_csv(tmp_path / "data" / "site_b.csv", header, rows)
    with pytest.raises(DataError) as info:
        load_csv({"path": str(path), "valid_fraction": 0.5}, tabular)
    assert message in str(info.value)
    assert str(tmp_path / "data") in str(info.value)
    assert "\n" not in str(info.value)


def test_no_file_matches_glob(tmp_path: Path, tabular: DataContract) -> None:
    with pytest.raises(DataError, match="no file matches"):
        load_csv({"path": str(tmp_path / "*.csv")}, tabular)


def test_missing_file_and_missing_contract(tmp_path: Path, tabular: DataContract) -> None:
    with pytest.raises(DataError, match=r"nope\.csv: not found"):
        load_csv({"path": str(tmp_path / "nope.csv")}, tabular)
    with pytest.raises(DataError, match="needs the plan's data_contract"):
        load_csv({"path": str(tmp_path / "nope.csv")}, None)


def test_shape_mismatch_against_contract(tmp_path: Path) -> None:
    contract = DataContract(features=(31,), classes=("0", "1"))
    path = write_csv(tmp_path / "s.csv", [*(f"f{i}" for i in range(30)), "label"],
                     [[0.0] * 30 + [i % 2] for i in range(4)])
    ds = load_csv({"path": str(path)}, contract)
    with pytest.raises(DataError, match=r"x_train: shape \(n, 30\), the plan expects \(n, 31\)"):
        check_dataset(ds, contract)
