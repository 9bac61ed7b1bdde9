"""A federation on the sites' own CSV files through the real `fx` CLI: a data contract, the
numpy runner shaped by it, two collaborators each with its own file (``--data``), held-out test
data on the aggregator (``aggregator.test_data``), mutual TLS, every participant a process."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from openfl_like.app.common import runner_params
from openfl_like.app.data import load_site_data
from openfl_like.plan.load import load_plan
from openfl_like.plan.local_data import load_local_data_spec
from openfl_like.runners.registry import evaluate_weights

from .conftest import (
    FINAL_ACCURACY,
    Federation,
    ProcessRegistry,
    copy_plan,
    free_port,
    load_npz,
    outputs_dir,
)

pytestmark = pytest.mark.e2e

ROUNDS = 3
CLASSES = ["malignant", "benign"]


def _write_csv(path: Path, header: list[str], x: np.ndarray, labels: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join([*header, "diagnosis"])]
    lines += [",".join([*(f"{v:.6g}" for v in row), label]) for row, label in zip(x, labels,
                                                                                   strict=True)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _description(path: Path, csv: str) -> Path:
    path.write_text(yaml.safe_dump({"loader": "csv",
                                    "params": {"path": csv, "valid_fraction": 0.2, "seed": 1}}))
    return path


def breast_cancer_files(root: Path) -> tuple[list[str], dict[str, Path], Path]:
    """Feature columns, each site's description, the test description (standardised data)."""
    datasets = pytest.importorskip("sklearn.datasets")
    data = datasets.load_breast_cancer()
    x = data.data.astype(np.float64)
    x = (x - x.mean(axis=0)) / x.std(axis=0)  # public statistics: fine for a test
    labels = [str(data.target_names[t]) for t in data.target]
    columns = [f"f{i:02d}" for i in range(x.shape[1])]
    order = np.random.default_rng(7).permutation(len(labels))
    parts = {"col1": order[:230], "col2": order[230:460], "test": order[460:]}
    sites: dict[str, Path] = {}
    for name, idx in parts.items():
        folder = root / name
        _write_csv(folder / f"{name}.csv", columns, x[idx], [labels[i] for i in idx])
        desc = _description(folder / "data.yaml", f"{name}.csv")
        sites[name] = desc
    test = sites.pop("test")
    return columns, sites, test


@pytest.mark.timeout(240)
def test_two_sites_on_their_own_csv_files_over_mtls(
    tmp_path: Path, procs: ProcessRegistry, shared_pki: Path
) -> None:
    # Prepare: a plan with a data contract; the sites' files outside the plan folder; the test
    # description beside the plan (aggregator-local).
    columns, sites, test_desc = breast_cancer_files(tmp_path / "hosts")
    plan = copy_plan("numpy_digits", tmp_path / "plan", {
        "aggregator.rounds_to_train": ROUNDS,
        "aggregator.test_data": str(test_desc),
        "data_contract": {"features": [len(columns)], "classes": CLASSES,
                          "columns": columns, "label_column": "diagnosis"},
    }, collaborators=("col1", "col2"))
    loaded = load_plan(plan)
    assert loaded.network.get("tls", True) is not False  # mutual TLS: the default, kept
    fed = Federation(plan, shared_pki, tmp_path / "ws", free_port(), procs)

    # Execute: the aggregator and each collaborator as its own `fx` process, each site naming
    # its own data with --data.
    fed.start_aggregator()
    for name, desc in sites.items():
        fed.collaborators[name] = procs.start(
            "collaborator", "start", "-n", name, "-p", plan, "--pki-dir", shared_pki,
            "--aggregator", f"127.0.0.1:{fed.port}", "--data", desc, name=name, cwd=tmp_path)

    # Assert: all exit 0; the printed accuracy is the final model's on the test CSV.
    for name in sites:
        fed.collaborators[name].wait_ok(180)
    assert fed.aggregator is not None
    fed.aggregator.wait_ok(60)
    stdout = fed.aggregator.stdout.text()
    matches = FINAL_ACCURACY.findall(stdout)
    assert len(matches) == 1, fed.aggregator.output()
    printed = float(matches[0])
    assert printed >= 0.85, stdout
    final = load_npz(outputs_dir(fed.workspace) / "final_model.npz")
    assert final["dense/kernel"].shape == (30, 2)
    test = load_site_data(loaded, load_local_data_spec(test_desc))
    x = np.concatenate([test.x_train, test.x_valid])
    y = np.concatenate([test.y_train, test.y_valid])
    assert len(y) == 569 - 460
    measured = evaluate_weights("numpy", final, x, y, **runner_params(loaded))["accuracy"]
    assert abs(measured - printed) < 0.00005, (measured, printed)
    assert re.search(r"finished: .*test_accuracy=", stdout), stdout


@pytest.mark.timeout(240)
def test_plan_run_with_data_yaml_paths_reports_the_sites_validation(
    tmp_path: Path, procs: ProcessRegistry
) -> None:
    # Prepare: data.yaml names each site's description file; no test data anywhere.
    columns, sites, _ = breast_cancer_files(tmp_path / "hosts")
    plan = copy_plan("numpy_digits", tmp_path / "plan", {
        "aggregator.rounds_to_train": ROUNDS,
        "data_contract": {"features": [len(columns)], "classes": CLASSES,
                          "columns": columns, "label_column": "diagnosis"},
    }, collaborators=("col1", "col2"))
    (plan / "data.yaml").write_text(yaml.safe_dump({n: str(d) for n, d in sites.items()}))
    workspace = tmp_path / "ws"

    # Execute
    run = procs.start("plan", "run", plan, "--pki-dir", tmp_path / "pki", "--workspace",
                      workspace, "--port", str(free_port()), name="plan-run", cwd=tmp_path)
    run.wait_ok(180)

    # Assert: the closing line is the sites' sample-weighted validation of the final model.
    last = run.stdout.text().rstrip().splitlines()[-1]
    match = re.fullmatch(r"final validation accuracy \(mean of the sites' validation\): "
                         r"(\d\.\d{4})", last)
    assert match, run.output()
    history = yaml.safe_load((outputs_dir(workspace) / "metrics.json").read_text())
    expected = history[-1]["metrics"]["aggregated_model_validation"]["accuracy"]
    assert float(match.group(1)) == pytest.approx(expected, abs=5e-5) and expected >= 0.85
    assert not FINAL_ACCURACY.search(run.stdout.text())
