"""`fx envoy` in-process: refusals are one `fx: error:` line with a non-zero exit."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from openfl_like.cli.main import main
from openfl_like.director.envoy_approvals import Decision, DecisionRecord, write_decision
from openfl_like.plan.envoy_config import load_envoy_config
from tests.unit.director.envoy_fakes import write_site


def run_fx(args: list[str]) -> tuple[int, str, str]:
    runner = CliRunner()
    with runner.isolation() as streams:
        try:
            main(args)
            code = 0
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        out, err = streams[0].getvalue().decode(), streams[1].getvalue().decode()
    return code, out, err


def _one_error(code: int, out: str, err: str) -> str:
    assert code != 0, out + err
    lines = [line for line in err.splitlines() if line.startswith("fx: error:")]
    assert len(lines) == 1 and "Traceback" not in out + err, out + err
    return lines[0]


def test_status_of_an_envoy_that_is_not_running(tmp_path: Path) -> None:
    config = write_site(tmp_path)
    line = _one_error(*run_fx(["envoy", "status", "-n", "site1", "-c", str(config)]))
    assert "envoy site1 is not running" in line


def test_start_refuses_data_that_does_not_fit(tmp_path: Path) -> None:
    config = write_site(tmp_path, features=5, contract_features=4)
    line = _one_error(*run_fx(["envoy", "start", "-n", "site1", "-c", str(config),
                               "--pki-dir", str(tmp_path / "pki")]))
    assert "does not fit the contract" in line and "site.npz" in line


def test_approve_and_reject_while_down(tmp_path: Path) -> None:
    path = write_site(tmp_path, review=True)
    line = _one_error(*run_fx(["envoy", "approve", "exp1", "-n", "site1", "-c", str(path)]))
    assert "unknown experiment 'exp1'" in line
    config = load_envoy_config(path, "site1")
    write_decision(config.experiment_dir("exp1"), DecisionRecord("exp1", Decision.PENDING))
    code, out, err = run_fx(["envoy", "reject", "exp1", "-n", "site1", "-c", str(path),
                             "--reason", "no thanks"])
    assert code == 0, out + err
    assert "exp1: rejected (recorded; the envoy applies it at its next start)" in out
    code, out, err = run_fx(["envoy", "reject", "exp1", "-n", "site1", "-c", str(path)])
    assert code != 0 and "--reason" in err  # required


def test_bad_configuration_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "envoy.yaml"
    path.write_text("envoy: {director: {host: h, port: 0}}\n")
    line = _one_error(*run_fx(["envoy", "status", "-n", "site1", "-c", str(path)]))
    assert "envoy.director.port: must be >= 1" in line
