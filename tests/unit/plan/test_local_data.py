"""Data descriptions: loader from the registry, paths relative to the file, named refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from openfl_like.core.errors import PlanError
from openfl_like.plan.local_data import load_local_data_spec


def _write(tmp_path: Path, doc: Any) -> Path:
    path = tmp_path / "site" / "data.local.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return path


def test_paths_are_resolved_against_the_description(tmp_path: Path) -> None:
    path = _write(tmp_path, {"loader": "csv", "params": {"path": "files/*.csv",
                                                         "valid_fraction": 0.25, "seed": 3}})
    spec = load_local_data_spec(path)
    assert spec.loader == "csv"
    assert spec.params["path"] == str(tmp_path.resolve() / "site" / "files" / "*.csv")
    assert spec.params["valid_fraction"] == 0.25 and spec.params["seed"] == 3
    assert spec.source == path.resolve()


def test_digits_spec_has_no_paths(tmp_path: Path) -> None:
    spec = load_local_data_spec(_write(tmp_path, "loader: digits\nparams: {shard: 2, "
                                                 "num_shards: 3, method: iid}\n"))
    assert dict(spec.params) == {"shard": 2, "num_shards": 3, "method": "iid"}


@pytest.mark.parametrize("doc, message", [
    ({"loader": "parquet", "params": {}},
     "loader: must be one of digits, digits_test, npz, csv, image_folder"),
    ({"params": {"path": "x"}}, "loader: is required"),
    ({"loader": "csv", "params": {}}, "params.path: is required for loader 'csv'"),
    ({"loader": "csv", "params": {"path": "x", "x_key": "a"}},
     "params.x_key: unknown parameter for loader 'csv'"),
    ({"loader": "npz", "params": {"path": "x", "valid_fraction": 1.5}},
     "params.valid_fraction: must be < 1"),
    ({"loader": "npz", "params": {"path": "x", "seed": -1}}, "params.seed: must be >= 0"),
    ({"loader": "npz", "params": {"path": 3}}, "params.path: must be a non-empty string"),
    ({"loader": "digits", "params": {"shard": 0}}, "params.num_shards: is required"),
    ({"loader": "csv", "params": {"path": "x", "valid_path": "v", "valid_fraction": 0.1}},
     "params.valid_fraction: give valid_path or valid_fraction, not both"),
    ({"loader": "csv", "params": {"path": "x"}, "extra": 1}, "extra: unknown key"),
    ("loader: [csv\n", "invalid YAML at line 2"),
])
def test_refusals_name_file_and_key(tmp_path: Path, doc: Any, message: str) -> None:
    path = _write(tmp_path, doc)
    with pytest.raises(PlanError) as info:
        load_local_data_spec(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="data description not found"):
        load_local_data_spec(tmp_path / "nope.yaml")
