"""Item: a collaborator on its own data (``--data`` or a data.yaml path), held to the contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from openfl_like.app.collaborator import build_runner
from openfl_like.app.common import runner_params
from openfl_like.core.errors import ConfigError, DataError, PlanError
from openfl_like.plan.load import load_plan
from openfl_like.runners.common import check_labels, check_xy
from openfl_like.runners.numpy_runner import NumpyRunner
from tests.unit.cli.test_data_check import run_fx
from tests.unit.data.conftest import good_rows, write_csv

CONTRACT = {"features": [3], "classes": ["benign", "malignant"],
            "columns": ["age", "size", "density"], "label_column": "diagnosis"}
HEADER = ["age", "size", "density", "diagnosis"]


def make_plan(tmp_path: Path, *, contract: dict[str, object] | None = CONTRACT,
              data_yaml: str = "col1: 0\n", params: dict[str, object] | None = None) -> Path:
    plan = tmp_path / "plan"
    plan.mkdir(exist_ok=True)
    doc: dict[str, object] = {"task_runner": {"name": "numpy", "params": params or {}},
                              "network": {"tls": False}}
    if contract is not None:
        doc["data_contract"] = contract
    (plan / "plan.yaml").write_text(yaml.safe_dump(doc))
    (plan / "cols.yaml").write_text("collaborators: [col1]\n")
    (plan / "data.yaml").write_text(data_yaml)
    return plan


def make_site(root: Path, rows: int = 20, header: list[str] = HEADER) -> Path:
    write_csv(root / "data" / "site.csv", header, good_rows(rows))
    desc = root / "site.yaml"
    desc.write_text("loader: csv\nparams:\n  path: data/site.csv\n  valid_fraction: 0.25\n")
    return desc


def test_data_option_builds_the_runner_on_the_site_data(tmp_path: Path) -> None:
    plan = load_plan(make_plan(tmp_path))
    desc = make_site(tmp_path / "site")
    runner = build_runner(plan, "col1", data_file=desc)
    assert isinstance(runner, NumpyRunner)
    assert (runner.spec.input_dim, runner.spec.num_classes) == (3, 2)
    assert runner.sample_counts() == {"train": 15, "valid": 5}
    assert runner.train(epochs=1, batch_size=4).data_size == 15
    assert set(runner.validate(batch_size=4).metrics) == {"loss", "accuracy"}


def test_data_yaml_path_entry_is_a_description_relative_to_the_plan(tmp_path: Path) -> None:
    make_site(tmp_path / "plan" / "sites" / "col1")
    plan = load_plan(make_plan(tmp_path, data_yaml="col1: sites/col1/site.yaml\n"))
    runner = build_runner(plan, "col1")
    assert runner.sample_counts() == {"train": 15, "valid": 5}


def test_digits_shard_index_still_works(tmp_path: Path) -> None:
    plan = load_plan(make_plan(tmp_path, contract=None))
    runner = build_runner(plan, "col1")
    assert isinstance(runner, NumpyRunner) and runner.spec.input_dim == 64
    assert runner.sample_counts()["train"] > 100


def test_contract_sets_the_model_shape_and_params_override(tmp_path: Path) -> None:
    plan = load_plan(make_plan(tmp_path))
    assert runner_params(plan)["input_dim"] == 3 and runner_params(plan)["num_classes"] == 2
    plan = load_plan(make_plan(tmp_path, params={"num_classes": 5}))
    assert runner_params(plan)["num_classes"] == 5
    assert "input_dim" not in runner_params(load_plan(make_plan(tmp_path, contract=None)))


def test_contract_mismatch_is_refused_naming_the_file(tmp_path: Path) -> None:
    plan = load_plan(make_plan(tmp_path))
    desc = make_site(tmp_path / "site", header=["size", "density", "age", "diagnosis"][1:])
    with pytest.raises(DataError, match=r"site\.csv: column 'size' missing"):
        build_runner(plan, "col1", data_file=desc)


def test_data_without_contract_must_fit_input_dim(tmp_path: Path) -> None:
    plan = load_plan(make_plan(tmp_path, contract=None))
    np.savez(tmp_path / "site.npz", x_train=np.zeros((20, 3), np.float32),
             y_train=np.arange(20) % 2)
    desc = tmp_path / "site.yaml"
    desc.write_text("loader: npz\nparams:\n  path: site.npz\n")
    with pytest.raises(ConfigError, match="3 features per sample, the model's input_dim is 64"):
        build_runner(plan, "col1", data_file=desc)


def test_cli_bad_data_file_is_one_line(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    desc = make_site(tmp_path / "site", header=["age", "size", "diagnosis"])
    code, out, err = run_fx(["collaborator", "start", "-n", "col1", "-p", str(plan),
                             "--data", str(desc), "--workspace", str(tmp_path / "ws")])
    assert code == 2, (out, err)
    csv = tmp_path / "site" / "data" / "site.csv"
    assert err == f"fx: error: {csv}: column 'density' missing\n"
    code, _, err = run_fx(["collaborator", "start", "-n", "col1", "-p", str(plan),
                           "--data", str(tmp_path / "nope.yaml")])
    assert code == 2 and err == f"fx: error: {tmp_path / 'nope.yaml'}: data description not found\n"


def test_no_data_yaml_entry_without_data_option_is_a_plan_error(tmp_path: Path) -> None:
    plan = load_plan(make_plan(tmp_path, data_yaml="{}\n"))
    with pytest.raises(PlanError, match="col1: no shard"):
        build_runner(plan, "col1")


def test_check_xy_accepts_regression_targets_only_for_regression() -> None:
    x = np.zeros((4, 2), np.float32)
    y = np.array([0.5, 1.5, -2.0, 3.25])
    _, targets = check_xy(x, y, input_dim=2, task="regression")
    assert targets.dtype == np.float32 and targets.tolist() == [0.5, 1.5, -2.0, 3.25]
    with pytest.raises(ConfigError, match="expected 4 integer labels"):
        check_xy(x, y, input_dim=2)
    _, labels = check_xy(x, np.array([0, 1, 1, 0]), input_dim=2)
    assert labels.dtype == np.int64
    with pytest.raises(ConfigError, match="finite"):
        check_labels(np.array([1.0, np.nan]), 2, task="regression")
    with pytest.raises(ConfigError, match="numeric targets"):
        check_labels(np.array(["a", "b"]), 2, task="regression")
    with pytest.raises(ConfigError, match="task"):
        check_labels(y, 4, task="ranking")
