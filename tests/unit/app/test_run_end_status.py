"""When the aggregator's run ends, status.json keeps how (done / failed / stopped, not running)
with the final metrics, and an ended federation's staging folder is gone."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from openfl_like.app.aggregator import RunningAggregator
from openfl_like.app.common import Workspace, runner_params
from openfl_like.core.errors import FederationError
from openfl_like.plan.load import load_plan
from openfl_like.runners.registry import initial_weights
from tests.unit.app.test_final_evaluation import HISTORY, make_plan


def _running(tmp_path: Path, *, done: bool, failed: str = "") -> RunningAggregator:
    plan = load_plan(make_plan(tmp_path, test_data="test/test.yaml"))
    weights = initial_weights("numpy", seed=0, **runner_params(plan))
    phase = "failed" if failed else "done" if done else "training"
    fake = SimpleNamespace(
        weights=lambda: weights, best_weights=lambda: weights, history=HISTORY, done=done,
        failed=failed, exported=True, wait_until_done=lambda timeout=None: done or bool(failed),
        status=lambda: {"phase": phase, "failed": failed}, begin_shutdown=lambda: None,
        stop=lambda timeout=None: None)
    server = SimpleNamespace(host="127.0.0.1", port=5, health=None,
                             stop=lambda grace=None: None)
    running = RunningAggregator(plan=plan, workspace=Workspace(tmp_path / "ws"),
                                aggregator=fake, server=server)  # type: ignore[arg-type]
    staging = running.workspace.state_dir / "staging"
    staging.mkdir(parents=True)
    (staging / "col1-r1-train-abc.bin").write_bytes(b"late upload")
    return running


def _status(running: RunningAggregator) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(running.workspace.status_path.read_text())
    return data


def test_done_run_leaves_phase_done_with_final_metrics_and_no_staging(tmp_path: Path) -> None:
    running = _running(tmp_path, done=True)
    final = running.run()
    status = _status(running)
    assert status["phase"] == "done" and status["running"] is False
    assert status["final_test"] == final and "test_accuracy" in final
    assert json.loads(running.workspace.final_metrics_path.read_text()) == final
    assert not (running.workspace.state_dir / "staging").exists()


def test_failed_run_says_failed_and_removes_staging(tmp_path: Path) -> None:
    running = _running(tmp_path, done=False, failed="round 1: no quorum at the deadline")
    with pytest.raises(FederationError, match="no quorum"):
        running.run()
    status = _status(running)
    assert (status["phase"], status["running"]) == ("failed", False)
    assert status["failed"] == "round 1: no quorum at the deadline"
    assert not (running.workspace.state_dir / "staging").exists()


def test_stopped_run_says_stopped_and_keeps_staging_for_the_resume(tmp_path: Path) -> None:
    running = _running(tmp_path, done=False)
    running.stop_requested.set()
    assert running.run() == {"stopped": True}
    status = _status(running)
    assert (status["phase"], status["running"]) == ("stopped", False)
    assert "ended_unix" in status and "final_test" not in status
    assert (running.workspace.state_dir / "staging" / "col1-r1-train-abc.bin").exists()
