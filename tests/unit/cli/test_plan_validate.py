"""`fx plan validate` refuses a misspelt runner parameter and names the key it meant."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from openfl_like.cli.main import cli, main


def _plan(tmp_path: Path, params: dict[str, object]) -> Path:
    folder = tmp_path / "plan"
    folder.mkdir()
    (folder / "plan.yaml").write_text(yaml.safe_dump(
        {"task_runner": {"name": "keras", "params": params}}))
    (folder / "cols.yaml").write_text(yaml.safe_dump({"collaborators": ["one", "two"]}))
    (folder / "data.yaml").write_text(yaml.safe_dump({"one": 0, "two": 1}))
    return folder


def test_validate_names_the_misspelt_runner_parameter(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    folder = _plan(tmp_path, {"builder": "digits_mlp", "learnin_rate": 0.01})
    with pytest.raises(SystemExit) as info:
        main(["plan", "validate", str(folder)])
    assert info.value.code != 0
    assert capsys.readouterr().err.strip() == (
        "fx: error: plan.yaml: task_runner.params.learnin_rate: unknown key (did you mean "
        "learning_rate?); see docs/plan_reference.md")


def test_validate_accepts_the_spelt_parameter(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["plan", "validate", str(_plan(tmp_path, {
        "builder": "digits_mlp", "learning_rate": 0.01}))])
    assert result.exit_code == 0, result.output
    assert '"learning_rate": 0.01' in result.output
