"""`fx aggregator status` shows who was dropped and why, and each site's declared samples."""

from __future__ import annotations

import json
import time
from pathlib import Path

from click.testing import CliRunner

from openfl_like.cli.main import cli
from tests.unit.federation.harness import write_plan


def test_status_table_names_dropped_collaborators_and_declared_samples(tmp_path: Path) -> None:
    # Prepare: a status file as the aggregator writes it
    plan = write_plan(tmp_path / "plan")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "status.json").write_text(json.dumps({
        "federation": "test", "address": "127.0.0.1:1", "round": 2, "rounds_to_train": 3,
        "phase": "training", "results_in": 1, "waiting_for": ["col2"], "failed": "",
        "disk_problem": "the aggregator is out of disk space (writing /x); retry later",
        "collaborators": {
            "col1": {"active": True, "last_seen_seconds_ago": 0.2, "pending_tasks": [],
                     "samples": {"train": 40, "valid": 10}},
            "col2": {"active": True, "last_seen_seconds_ago": 1.0, "pending_tasks": ["train"]},
            "col3": {"active": False, "last_seen_seconds_ago": 99.0, "pending_tasks": ["train"],
                     "dropped": "revoked"},
        },
    }))
    # Execute
    result = CliRunner().invoke(cli, ["aggregator", "status", "-p", str(plan), "--workspace",
                                      str(workspace)], terminal_width=200)
    # Assert
    assert result.exit_code == 0, result.output
    row = {name: next(line for line in result.output.splitlines() if f" {name} " in line)
           for name in ("col1", "col2", "col3")}
    assert "40/10" in row["col1"] and "revoked" not in row["col1"], result.output
    assert "revoked" in row["col3"] and "-/-" not in row["col2"], result.output
    assert "waiting for: col2" in result.output
    assert "out of disk space" in result.output


def _write_status(workspace: Path, **fields: object) -> None:
    workspace.mkdir(exist_ok=True)
    base: dict[str, object] = {
        "federation": "test", "address": "127.0.0.1:1", "round": 3, "rounds_to_train": 3,
        "phase": "done", "results_in": 0, "waiting_for": [], "failed": "", "collaborators": {},
        "updated_unix": time.time(), "running": True,
        "estimate": {"round_remaining_seconds": None},
    }
    base.update(fields)
    (workspace / "status.json").write_text(json.dumps(base))


def test_a_stopped_aggregator_is_said_to_be_stopped_with_its_final_result(tmp_path: Path) -> None:
    plan = write_plan(tmp_path / "plan")
    workspace = tmp_path / "ws"
    _write_status(workspace, running=False)
    (workspace / "outputs").mkdir()
    (workspace / "outputs" / "final_metrics.json").write_text(
        json.dumps({"rounds": 3, "test_accuracy": 0.9375}))
    args = ["aggregator", "status", "-p", str(plan), "--workspace", str(workspace)]
    shown = CliRunner().invoke(cli, args, terminal_width=200)
    as_json = CliRunner().invoke(cli, [*args, "--json"])
    assert shown.exit_code == 0, shown.output
    assert "the aggregator is not running: it has stopped" in shown.output
    assert "final result: rounds=3, test_accuracy=0.9375" in shown.output
    data = json.loads(as_json.output)
    assert data["running"] is False and data["final_metrics"]["test_accuracy"] == 0.9375


def test_a_status_file_no_longer_refreshed_means_the_aggregator_is_gone(tmp_path: Path) -> None:
    plan = write_plan(tmp_path / "plan")
    workspace = tmp_path / "ws"
    _write_status(workspace, phase="training", updated_unix=time.time() - 60)
    result = CliRunner().invoke(cli, ["aggregator", "status", "-p", str(plan), "--workspace",
                                      str(workspace), "--json"])
    data = json.loads(result.output)
    assert data["running"] is False and data["stale_seconds"] >= 59


def test_a_running_aggregator_shows_the_wait_uploads_and_estimate(tmp_path: Path) -> None:
    plan = write_plan(tmp_path / "plan")
    workspace = tmp_path / "ws"
    _write_status(
        workspace, phase="training", round=1, waiting_for=["col2"], waiting_seconds=7.25,
        deadline_in_seconds=20.0,
        estimate={"round_remaining_seconds": 4.0, "median_round_seconds": 11.0,
                  "federation_remaining_seconds": 26.0},
        uploads_in_flight={"col2": {"bytes": 3_500_000, "seconds": 2.0}},
        collaborators={"col2": {"active": True, "last_seen_seconds_ago": 0.1,
                                "pending_tasks": ["train"]}})
    result = CliRunner().invoke(cli, ["aggregator", "status", "-p", str(plan), "--workspace",
                                      str(workspace)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "waiting for: col2 (for 7.2 s)" in result.output
    assert "round may end in ~4.0 s (median round 11.0 s, deadline in 20.0 s)" in result.output
    assert "3.5MB/2s" in result.output
    assert "not running" not in result.output


def test_remote_status_needs_the_operator_name(tmp_path: Path) -> None:
    plan = write_plan(tmp_path / "plan")
    result = CliRunner().invoke(cli, ["aggregator", "status", "-p", str(plan),
                                      "--aggregator", "127.0.0.1:1"], env={"FX_OPERATOR": ""})
    assert result.exit_code != 0
    assert "operator certificate's name" in str(result.exception or result.output)
