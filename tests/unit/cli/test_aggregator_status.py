"""`fx aggregator status` shows who was dropped and why, and each site's declared samples."""

from __future__ import annotations

import json
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
