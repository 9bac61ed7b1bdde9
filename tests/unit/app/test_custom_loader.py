"""A site's own loader code ('module:attr') runs only with the plan's and the operator's consent."""

from __future__ import annotations

from pathlib import Path

import pytest

from openfl_like.app.data import check_local_data
from openfl_like.core.errors import DataError, PlanError
from tests.unit.federation.harness import write_plan

LOADER = '''
import numpy as np

def load(params, contract):
    n = int(params["n"])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, int(params.get("width", 3)))).astype("float32")
    return x, (np.arange(n) % 2)

def broken(params, contract):
    return "not arrays"
'''


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "site_loader_mod.py").write_text(LOADER)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _plan(root: Path, allow: bool) -> Path:
    return write_plan(root / "plan", {
        "task_runner": {"allow_custom_objects": allow},
        "data_contract": {"features": [3], "label": "classes", "classes": ["a", "b"]},
    })


def _description(root: Path, ref: str, **params: object) -> Path:
    lines = [f"loader: {ref}", "params:"] + [f"  {k}: {v}" for k, v in params.items()]
    path = root / "site.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_custom_loader_runs_with_both_consents_and_is_held_to_the_contract(site: Path) -> None:
    plan = _plan(site, allow=True)
    report = check_local_data(plan, _description(site, "site_loader_mod:load", n=40),
                              allow_custom=True)
    assert report.dataset.num_train + report.dataset.num_valid == 40
    with pytest.raises(DataError, match="expects"):  # 4 features where the plan says 3
        check_local_data(plan, _description(site, "site_loader_mod:load", n=40, width=4),
                         allow_custom=True)
    with pytest.raises(DataError, match="expected a LocalDataset or the arrays"):
        check_local_data(plan, _description(site, "site_loader_mod:broken"), allow_custom=True)


def test_a_custom_loader_is_refused_without_the_operator_or_the_plan(site: Path) -> None:
    description = _description(site, "site_loader_mod:load", n=10)
    with pytest.raises(PlanError, match="the operator must allow them explicitly"):
        check_local_data(_plan(site, allow=True), description)
    with pytest.raises(PlanError, match="allow_custom_objects: must be true"):
        check_local_data(_plan(site / "other", allow=False), description, allow_custom=True)
