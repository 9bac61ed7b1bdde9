"""`fx plan run` in-process: --resume/--fresh, refusals that leave the workspace untouched.

Starting the federation itself is replaced by a recorder (the e2e tests run the real one), so
these tests see exactly what the launcher would find in the workspace when it starts children.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from openfl_like.app import local_run
from openfl_like.cli.main import cli
from openfl_like.core.errors import FederationError

pytestmark = pytest.mark.timeout(120)

PLAN = Path(__file__).resolve().parents[3] / "plans" / "numpy_digits"
HOLD_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
os.ftruncate(fd, 0)
os.write(fd, str(os.getpid()).encode())
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pki")  # filled by the first `fx plan run`


@pytest.fixture
def plan_dir(tmp_path: Path) -> Path:
    dest = tmp_path / "plan"
    shutil.copytree(PLAN, dest, ignore=shutil.ignore_patterns("workspace"))
    return dest


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replaces starting the children: records what the workspace held at that moment."""
    calls: list[dict[str, Any]] = []

    def fake_run_children(plan: Any, plan_dir: Any, pki: Any, ws: Any, *args: Any,
                          **kwargs: Any) -> dict[str, int]:
        calls.append({"state": (ws.state_dir / "state.json").exists(),
                      "outputs": ws.output_dir.exists()})
        return {}

    monkeypatch.setattr(local_run, "_run_children", fake_run_children)
    return calls


def saved_run(ws: Path, **state: object) -> None:
    (ws / "state").mkdir(parents=True)
    (ws / "outputs").mkdir()
    (ws / "outputs" / "metrics.json").write_text("[]")
    (ws / "status.json").write_text("{}")
    body = {"round_number": 2, "history": [], "done": False, "failed": "", **state}
    (ws / "state" / "state.json").write_text(json.dumps(body))


def untouched(ws: Path) -> bool:
    return all(p.exists() for p in (ws / "state" / "state.json", ws / "outputs" / "metrics.json",
                                    ws / "status.json"))


def fx_plan_run(plan_dir: Path, pki_dir: Path, ws: Path, *extra: str) -> Any:
    return CliRunner().invoke(cli, ["plan", "run", str(plan_dir), "--pki-dir", str(pki_dir),
                                    "--workspace", str(ws), "--port", "0", *extra])


def test_resumable_run_is_refused_without_fresh(plan_dir: Path, pki_dir: Path, tmp_path: Path,
                                                started: list[dict[str, Any]]) -> None:
    # Prepare
    ws = tmp_path / "ws"
    saved_run(ws)

    # Execute
    result = fx_plan_run(plan_dir, pki_dir, ws)

    # Assert: refused before any process starts; nothing deleted; the way on is named.
    assert isinstance(result.exception, FederationError), result.output
    message = result.exception.message
    assert "--resume" in message and "--fresh" in message and str(ws / "state") in message
    assert started == []
    assert untouched(ws)


def test_fresh_deletes_the_resumable_run(plan_dir: Path, pki_dir: Path, tmp_path: Path,
                                         started: list[dict[str, Any]]) -> None:
    ws = tmp_path / "ws"
    saved_run(ws)
    result = fx_plan_run(plan_dir, pki_dir, ws, "--fresh")
    assert result.exit_code == 0, result.output
    assert started == [{"state": False, "outputs": False}]


def test_finished_run_is_cleared_without_fresh(plan_dir: Path, pki_dir: Path, tmp_path: Path,
                                               started: list[dict[str, Any]]) -> None:
    ws = tmp_path / "ws"
    saved_run(ws, done=True)
    result = fx_plan_run(plan_dir, pki_dir, ws)
    assert result.exit_code == 0, result.output
    assert started == [{"state": False, "outputs": False}]


def test_resume_keeps_the_saved_run(plan_dir: Path, pki_dir: Path, tmp_path: Path,
                                    started: list[dict[str, Any]]) -> None:
    ws = tmp_path / "ws"
    saved_run(ws)
    result = fx_plan_run(plan_dir, pki_dir, ws, "--resume")
    assert result.exit_code == 0, result.output
    assert started == [{"state": True, "outputs": True}]


def test_resume_and_fresh_together_are_a_usage_error(plan_dir: Path, pki_dir: Path,
                                                     tmp_path: Path,
                                                     started: list[dict[str, Any]]) -> None:
    ws = tmp_path / "ws"
    saved_run(ws)
    result = fx_plan_run(plan_dir, pki_dir, ws, "--resume", "--fresh")
    assert result.exit_code == 2
    assert "exclude each other" in result.output
    assert started == [] and untouched(ws)


@pytest.fixture
def live_aggregator_lock(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A workspace with a saved run and a live process holding its aggregator lock."""
    ws = tmp_path / "ws"
    saved_run(ws, done=True)
    (ws / "locks").mkdir()
    argv = [sys.executable, "-c", HOLD_LOCK, str(ws / "locks" / "aggregator.lock")]
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
            yield ws, holder.pid
        finally:
            holder.kill()
            holder.wait(10)


@pytest.mark.parametrize("extra", [(), ("--fresh",), ("--resume",)])
def test_live_aggregator_is_refused_and_nothing_is_deleted(
    plan_dir: Path, pki_dir: Path, live_aggregator_lock: tuple[Path, int],
    started: list[dict[str, Any]], extra: tuple[str, ...],
) -> None:
    ws, pid = live_aggregator_lock
    result = fx_plan_run(plan_dir, pki_dir, ws, *extra)
    assert isinstance(result.exception, FederationError), result.output
    assert f"pid {pid}" in result.exception.message
    assert str(ws) in result.exception.message
    assert started == [] and untouched(ws)


def test_help_names_the_new_option_and_the_signals() -> None:
    result = CliRunner().invoke(cli, ["plan", "run", "--help"])
    assert result.exit_code == 0
    for word in ("--fresh", "--resume", "SIGTERM", "SIGHUP"):
        assert word in result.output
