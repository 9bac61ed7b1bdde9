"""`fx data check` in-process: a matching site prints its counts; a mismatch is one error line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from openfl_like.cli.main import cli, main
from tests.unit.data.conftest import good_rows, write_csv

CONTRACT = {"features": [3], "classes": ["benign", "malignant"],
            "columns": ["age", "size", "density"], "label_column": "diagnosis"}
HEADER = ["age", "size", "density", "diagnosis"]


def run_fx(args: list[str]) -> tuple[int, str, str]:
    """``fx`` as the console script runs it (errors become one line and an exit code)."""
    runner = CliRunner()
    with runner.isolation() as streams:
        try:
            main(args)
            code = 0
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        out, err = streams[0].getvalue().decode(), streams[1].getvalue().decode()
    return code, out, err


@pytest.fixture
def site(tmp_path: Path) -> tuple[Path, Path]:
    plan = tmp_path / "plan"
    plan.mkdir()
    (plan / "plan.yaml").write_text(yaml.safe_dump({"task_runner": {"name": "numpy"},
                                                    "data_contract": CONTRACT}))
    (plan / "cols.yaml").write_text("collaborators: [col1]\n")
    (plan / "data.yaml").write_text("col1: 0\n")
    write_csv(tmp_path / "site" / "data" / "site_b.csv", HEADER, good_rows(10))
    desc = tmp_path / "site" / "data.yaml"
    desc.write_text("loader: csv\nparams:\n  path: data/site_b.csv\n  valid_fraction: 0.2\n")
    return plan, desc


def test_check_prints_counts_shape_and_classes(site: tuple[Path, Path]) -> None:
    plan, desc = site
    result = CliRunner().invoke(cli, ["data", "check", "-p", str(plan), "--data", str(desc)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "train samples: 8" in lines and "valid samples: 2" in lines
    assert "features: (3,) float32" in lines
    train_classes = [line for line in lines if line.startswith("classes (train): ")]
    counts = [int(part.rsplit(" ", 1)[1]) for part in train_classes[0].split(": ")[1].split(", ")]
    assert train_classes[0].startswith("classes (train): benign ") and sum(counts) == 8
    assert any(line.startswith("contract digest: ") and len(line) == 17 + 64 for line in lines)


def test_missing_column_is_one_error_line(site: tuple[Path, Path]) -> None:
    plan, desc = site
    write_csv(desc.parent / "data" / "site_b.csv", ["size", "density", "diagnosis"],
              [[1, 2, "benign"]])
    code, out, err = run_fx(["data", "check", "-p", str(plan), "--data", str(desc)])
    assert code == 2
    assert err == f"fx: error: {desc.parent / 'data' / 'site_b.csv'}: column 'age' missing\n"
    assert "train samples" not in out


def test_bad_description_names_its_key(site: tuple[Path, Path]) -> None:
    plan, desc = site
    desc.write_text("loader: csv\nparams: {path: x.csv, sheet: 1}\n")
    code, _, err = run_fx(["data", "check", "-p", str(plan), "--data", str(desc)])
    assert code == 2
    assert err.startswith(f"fx: error: {desc}: params.sheet: unknown parameter for loader 'csv'")


def test_plan_without_contract_says_so(tmp_path: Path) -> None:
    plan = tmp_path / "plan"
    plan.mkdir()
    (plan / "plan.yaml").write_text("task_runner: {name: numpy}\n")
    (plan / "cols.yaml").write_text("collaborators: [col1]\n")
    (plan / "data.yaml").write_text("col1: 0\n")
    desc = tmp_path / "d.yaml"
    desc.write_text("loader: digits\nparams: {shard: 0, num_shards: 2}\n")
    result = CliRunner().invoke(cli, ["data", "check", "-p", str(plan), "--data", str(desc)])
    assert result.exit_code == 0, result.output
    assert "features: (64,) float32" in result.output
    assert "no data_contract" in result.output


def test_data_check_imports_neither_grpc_nor_tensorflow(site: tuple[Path, Path]) -> None:
    plan, desc = site
    code = ("import sys\nfrom openfl_like.cli.main import main\n"
            f"try:\n    main(['data', 'check', '-p', {str(plan)!r}, '--data', {str(desc)!r}])\n"
            "except SystemExit:\n    pass\n"
            "bad = [m for m in ('grpc', 'tensorflow', 'keras') if m in sys.modules]\n"
            "print('LOADED', bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert "LOADED []" in out and "train samples: 8" in out
