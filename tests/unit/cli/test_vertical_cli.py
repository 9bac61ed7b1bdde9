"""`fx vertical`: a bad plan or role is one line and a non-zero exit, before any network."""

from __future__ import annotations

from pathlib import Path

import pytest

from openfl_like.cli.main import main


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as caught:
        main(args)
    captured = capsys.readouterr()
    return int(caught.value.code or 0), captured.out + captured.err


@pytest.mark.parametrize("command", [["start", "--role", "leader"], ["run"]])
def test_a_plan_mistake_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    command: list[str]) -> None:
    # Prepare
    (tmp_path / "plan.yaml").write_text(
        "session_id: s\nleader: {name: shop, address: '127.0.0.1:1'}\n"
        "follower: {name: bank, address: '127.0.0.1:2'}\nmodel: {batch_size: 0}\n")
    # Execute
    code, output = _run(["vertical", *command, "--plan", str(tmp_path),
                         "--pki-dir", str(tmp_path / "pki")], capsys)
    # Assert
    assert code == 2
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines == [f"fx: error: {tmp_path / 'plan.yaml'}: model.batch_size: must be >= 1 "
                     "(got 0)"], output
    assert not (tmp_path / "pki").exists()


def test_an_unknown_role_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, output = _run(["vertical", "start", "--role", "boss", "--plan", str(tmp_path)], capsys)
    assert code == 2 and "'boss' is not one of 'leader', 'follower'" in output
    assert "Traceback" not in output


def test_a_missing_certificate_is_named_before_anything_starts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare: a valid plan, an empty PKI folder
    (tmp_path / "plan.yaml").write_text(
        "session_id: s\nworkspace: ws\nleader: {name: shop, address: '127.0.0.1:1'}\n"
        "follower: {name: bank, address: '127.0.0.1:2'}\n")
    # Execute
    code, output = _run(["vertical", "start", "--role", "follower", "--plan", str(tmp_path),
                         "--pki-dir", str(tmp_path / "pki")], capsys)
    # Assert
    assert code != 0
    assert output.strip().splitlines()[-1] == (
        f"fx: error: cannot read certificate {tmp_path / 'pki' / 'certs' / 'bank.crt'}: "
        "No such file or directory")
