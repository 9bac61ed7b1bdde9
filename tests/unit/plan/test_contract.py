"""data_contract: parsed into DataContract, absent means None, every mistake names its key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from openfl_like.core.errors import PlanError
from openfl_like.plan import load_plan, plan_digest, plan_fingerprint
from openfl_like.plan.contract import contract_digest
from openfl_like.plan.schema import DataContract

PLANS = Path(__file__).resolve().parents[3] / "plans"


def _plan(tmp_path: Path, contract: Any) -> Path:
    folder = tmp_path / "p"
    folder.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"task_runner": {"name": "noop"}}
    if contract is not ...:
        doc["data_contract"] = contract
    (folder / "plan.yaml").write_text(yaml.safe_dump(doc))
    (folder / "cols.yaml").write_text("collaborators: [col1]\n")
    (folder / "data.yaml").write_text("col1: 0\n")
    return folder


def test_absent_section_is_none() -> None:
    assert load_plan(PLANS / "numpy_digits").data_contract is None


def test_tabular_contract(tmp_path: Path) -> None:
    plan = load_plan(_plan(tmp_path, {"features": [2], "classes": ["benign", "malignant"],
                                      "columns": ["age", "size"], "label_column": "y"}))
    assert plan.data_contract == DataContract(
        features=(2,), classes=("benign", "malignant"), columns=("age", "size"),
        label_column="y",
    )


def test_image_contract_defaults_to_grayscale(tmp_path: Path) -> None:
    plan = load_plan(_plan(tmp_path, {"features": [8, 8, 1], "classes": ["0", "1"],
                                      "image_size": [8, 8]}))
    assert plan.data_contract is not None
    assert plan.data_contract.color_mode == "grayscale"
    assert plan.data_contract.image_size == (8, 8)


def test_contract_is_in_the_plan_digest_and_has_its_own(tmp_path: Path) -> None:
    a = load_plan(_plan(tmp_path / "a", {"features": [3], "classes": ["x", "y"]}))
    b = load_plan(_plan(tmp_path / "b", {"features": [3], "classes": ["y", "x"]}))
    assert plan_digest(a) != plan_digest(b)
    assert plan_fingerprint(a)["data_contract.classes"] == '["x","y"]'
    assert a.data_contract is not None and b.data_contract is not None
    assert contract_digest(a.data_contract) != contract_digest(b.data_contract)
    assert contract_digest(a.data_contract) == contract_digest(
        DataContract(features=(3,), classes=("x", "y")))
    assert len(contract_digest(a.data_contract)) == 64


@pytest.mark.parametrize("contract, message", [
    ({"classes": ["a", "b"]}, "data_contract.features: is required"),
    ({"features": [0], "classes": ["a", "b"]}, "data_contract.features: must be a list of"),
    ({"features": "30", "classes": ["a", "b"]}, "data_contract.features: must be a list of"),
    ({"features": [3]}, "data_contract.classes: must list at least 2 class names"),
    ({"features": [3], "classes": ["a", 1]}, "data_contract.classes[1]: must be a non-empty "
                                              "string (got 1); quote numbers"),
    ({"features": [3], "classes": ["a", "a"]}, "data_contract.classes[1]: duplicate name 'a'"),
    ({"features": [3], "label": "regression", "classes": ["a", "b"]},
     "data_contract.classes: applies to label: classes only"),
    ({"features": [3], "label": "ordinal"}, "data_contract.label: must be one of classes, "
                                            "regression (got 'ordinal')"),
    ({"features": [3], "classes": ["a", "b"], "dtype": "int8"},
     "data_contract.dtype: must be one of float16, float32, float64"),
    ({"features": [8, 8, 1], "classes": ["a", "b"], "image_size": [8, 8], "color_mode": "rgb"},
     "data_contract.features: must be [8, 8, 3] for image_size [8, 8] and color_mode rgb"),
    ({"features": [8, 8, 1], "classes": ["a", "b"], "image_size": [8]},
     "data_contract.image_size: must be a list of 2 integers > 0"),
    ({"features": [3], "classes": ["a", "b"], "color_mode": "rgb"},
     "data_contract.color_mode: applies with image_size only"),
    ({"features": [3], "classes": ["a", "b"], "columns": ["x", "y"]},
     "data_contract.features: must be [2] for the 2 columns (got [3])"),
    ({"features": [2], "classes": ["a", "b"], "columns": ["x", "label"]},
     "data_contract.columns: must not include the label column 'label'"),
    ({"features": [3], "classes": ["a", "b"], "colums": ["x"]},
     "data_contract.colums: unknown key"),
    (["features"], "data_contract: must be a mapping"),
])
def test_errors_name_file_and_key(tmp_path: Path, contract: Any, message: str) -> None:
    with pytest.raises(PlanError) as info:
        load_plan(_plan(tmp_path, contract))
    assert str(info.value).startswith("plan.yaml: ")
    assert message in str(info.value)
