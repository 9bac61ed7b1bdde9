"""The ready examples (plans/keras_tabular, plans/keras_images): their make_data.py writes data
that every site's description loads and that matches the plan's data contract. No TensorFlow:
only the data part of the scripts runs here (the model part is test_examples_keras.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from openfl_like.app.data import check_local_data
from openfl_like.plan.load import load_plan
from openfl_like.plan.local_data import load_local_data_spec
from tests.unit.plans.conftest import EXAMPLES, PLANS, copy_plan, load_make_data

pytest.importorskip("sklearn")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix != ".yaml"}


@pytest.mark.parametrize("example", EXAMPLES)
def test_committed_plan_validates_and_maps_every_site_to_a_description(example: str) -> None:
    # Execute
    plan = load_plan(PLANS / example)
    # Assert: a contract, the model file named, every collaborator's description is valid
    assert plan.data_contract is not None
    assert plan.task_runner.name == "keras"
    assert plan.task_runner.params["model"] == "model.keras"
    assert set(plan.shards) == set(plan.collaborators) == {"site_a", "site_b", "site_c"}
    for site in plan.collaborators:
        spec = load_local_data_spec(PLANS / example / str(plan.shard_for(site)))
        assert spec.loader in ("csv", "image_folder")
    load_local_data_spec(PLANS / example / "data" / "test.yaml")


@pytest.mark.parametrize("example", EXAMPLES)
def test_generated_data_passes_the_contract_at_every_site(example: str, tmp_path) -> None:
    # Prepare
    if example == "keras_images":
        pytest.importorskip("PIL")
    tf_loaded_before = "tensorflow" in sys.modules
    make_data = load_make_data(example)
    plan_dir = copy_plan(example, tmp_path)
    # Execute
    counts = make_data.write_data(plan_dir, seed=0)
    plan = load_plan(plan_dir)
    reports = {site: check_local_data(plan_dir, plan_dir / str(plan.shard_for(site)))
               for site in plan.collaborators}
    test_report = check_local_data(plan_dir, plan_dir / "data" / "test.yaml")
    # Assert: every site's data loads and fits; sizes add up; the sites are not IID
    assert plan.data_contract is not None
    for site, report in reports.items():
        ds = report.dataset
        assert ds.num_train + ds.num_valid == counts[site]
        assert tuple(ds.x_train.shape[1:]) == plan.data_contract.features
    assert test_report.dataset.num_train + test_report.dataset.num_valid == counts["test"]
    shares = np.array([[n for _, n in r.class_counts()] for r in reports.values()], float)
    shares /= shares.sum(axis=1, keepdims=True)
    assert np.abs(shares - shares.mean(axis=0)).max() > 0.1  # class mixes differ by site
    assert not (plan_dir / "model.keras").exists()
    if not tf_loaded_before:
        assert "tensorflow" not in sys.modules


def test_tabular_data_is_rewritten_identically(tmp_path) -> None:
    # Prepare
    make_data = load_make_data("keras_tabular")
    make_data.write_data(tmp_path, seed=0)
    first = _files(tmp_path)
    # Execute
    make_data.write_data(tmp_path, seed=0)
    # Assert: idempotent, no leftovers
    assert _files(tmp_path) == first
    assert sorted(first) == ["data/site_a.csv", "data/site_b.csv", "data/site_c.csv",
                             "data/test.csv"]


def test_images_rewrite_removes_stale_files(tmp_path) -> None:
    # Prepare
    pytest.importorskip("PIL")
    make_data = load_make_data("keras_images")
    make_data.write_data(tmp_path, seed=0)
    first = _files(tmp_path)
    stale = tmp_path / "data" / "site_a" / "3" / "stale.png"
    stale.write_bytes(b"not an image")
    # Execute
    make_data.write_data(tmp_path, seed=0)
    # Assert
    assert not stale.exists()
    assert _files(tmp_path) == first
