"""Item: the final evaluation on ``aggregator.test_data``, or the sites' validation without it."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import yaml

from openfl_like.app.aggregator import (
    RunningAggregator,
    final_metric_line,
    final_test_set,
    final_validation_metrics,
    uses_digits,
)
from openfl_like.app.common import Workspace, runner_params
from openfl_like.core.errors import PlanError
from openfl_like.plan import plan_digest
from openfl_like.plan.load import load_plan
from openfl_like.runners.registry import evaluate_weights, initial_weights
from tests.unit.data.conftest import good_rows, write_csv

CONTRACT = {"features": [3], "classes": ["benign", "malignant"],
            "columns": ["age", "size", "density"], "label_column": "diagnosis"}
HEADER = ["age", "size", "density", "diagnosis"]
HISTORY = [
    {"round": 0, "metrics": {"aggregated_model_validation": {"accuracy": 0.5, "loss": 2.0}}},
    {"round": 1, "metrics": {"aggregated_model_validation": {"accuracy": 0.93, "loss": 0.3},
                             "train": {"loss": 0.2}}},
    {"round": 2, "kind": "final_validation", "metrics": {}},
]


def make_plan(tmp_path: Path, *, test_data: str | None = None,
              contract: bool = True) -> Path:
    plan = tmp_path / "plan"
    plan.mkdir(parents=True, exist_ok=True)
    aggregator: dict[str, Any] = {"rounds_to_train": 2}
    if test_data is not None:
        aggregator["test_data"] = test_data
    doc: dict[str, Any] = {"task_runner": {"name": "numpy"}, "aggregator": aggregator}
    if contract:
        doc["data_contract"] = CONTRACT
    (plan / "plan.yaml").write_text(yaml.safe_dump(doc))
    (plan / "cols.yaml").write_text("collaborators: [col1]\n")
    (plan / "data.yaml").write_text("col1: 0\n")
    write_csv(plan / "test" / "test.csv", HEADER, good_rows(12))
    (plan / "test" / "test.yaml").write_text("loader: csv\nparams:\n  path: test.csv\n")
    return plan


def _running(plan_dir: Path, tmp_path: Path) -> RunningAggregator:
    plan = load_plan(plan_dir)
    weights = initial_weights("numpy", seed=0, **runner_params(plan))
    fake = SimpleNamespace(weights=lambda: weights, best_weights=lambda: weights,
                           history=HISTORY)
    return RunningAggregator(plan=plan, workspace=Workspace(tmp_path / "ws"),
                             aggregator=fake, server=None)  # type: ignore[arg-type]


def test_test_data_is_aggregator_local_and_not_in_the_digest(tmp_path: Path) -> None:
    with_it = load_plan(make_plan(tmp_path / "a", test_data="test/test.yaml"))
    without = load_plan(make_plan(tmp_path / "b"))
    assert with_it.aggregator.test_data == "test/test.yaml" and without.aggregator.test_data == ""
    assert plan_digest(with_it) == plan_digest(without)


def test_finish_evaluates_on_the_test_data(tmp_path: Path) -> None:
    running = _running(make_plan(tmp_path, test_data="test/test.yaml"), tmp_path)
    metrics = running.finish()
    x, y, _ = final_test_set(running.plan)
    assert len(y) == 12 and x.shape == (12, 3)
    expected = evaluate_weights("numpy", running.aggregator.weights(), x, y,
                                **runner_params(running.plan))
    assert metrics["test_accuracy"] == expected["accuracy"] and metrics["test_samples"] == 12
    assert json.loads(running.workspace.final_metrics_path.read_text()) == metrics
    assert final_metric_line(metrics) == f"final test accuracy: {expected['accuracy']:.4f}"


def test_finish_without_test_data_reports_the_sites_validation(tmp_path: Path) -> None:
    running = _running(make_plan(tmp_path), tmp_path)
    assert not uses_digits(running.plan)
    metrics = running.finish()
    assert metrics["valid_accuracy"] == 0.93 and "test_accuracy" not in metrics
    assert final_metric_line(metrics) == (
        "final validation accuracy (mean of the sites' validation): 0.9300")


def test_digits_plans_keep_the_digits_test_set(tmp_path: Path) -> None:
    plan = load_plan(make_plan(tmp_path, contract=False))
    assert uses_digits(plan)
    x, _, where = final_test_set(plan)
    assert x.shape[1] == 64 and where == "the held-out test set"
    assert final_metric_line({"rounds": 3, "test_accuracy": 0.97222, "test_loss": 0.1}) == (
        "final test accuracy: 0.9722")
    assert final_metric_line({"rounds": 3}) == ""


def test_a_missing_test_data_file_is_a_plan_error(tmp_path: Path) -> None:
    plan = load_plan(make_plan(tmp_path, test_data="nope.yaml"))
    with pytest.raises(PlanError, match=r"nope\.yaml: data description not found"):
        final_test_set(plan)


def test_final_validation_metrics_take_the_last_round_that_has_them() -> None:
    assert final_validation_metrics(HISTORY) == {"accuracy": 0.93, "loss": 0.3}
    assert final_validation_metrics([]) == {}
    assert np.isclose(final_validation_metrics(HISTORY[:1])["accuracy"], 0.5)


def test_a_model_not_fitting_the_digits_falls_back_to_the_sites_validation(
        tmp_path: Path) -> None:
    # A plan without a contract whose sites brought 3-feature data with --data.
    running = _running(make_plan(tmp_path, contract=False), tmp_path)
    weights = initial_weights("numpy", seed=0, input_dim=3, num_classes=2)
    running.aggregator.weights = lambda: weights  # type: ignore[method-assign]
    metrics = running.finish()
    assert "test_accuracy" not in metrics and metrics["valid_accuracy"] == 0.93
