"""Logs through the real `fx` processes: JSON lines on stderr and in the workspace's rotating
file, one plain line per round from a piped `fx plan run`, and an outage (the aggregator killed
and restarted) readable from the collaborator's and the aggregator's logs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .conftest import (
    LISTENING,
    Federation,
    ProcessRegistry,
    copy_plan,
    free_port,
    plan_collaborators,
    run_fx,
)

pytestmark = pytest.mark.e2e

PLAN = {
    "aggregator.write_tensorboard": False,
    "aggregator.write_plot": False,
    "network.retry_max_seconds": 1,
    "network.retry_total_seconds": 120,
}


def _json_lines(text: str) -> list[dict[str, object]]:
    """Every non-empty line parsed as one JSON object (fails on the first that is not)."""
    records = []
    for line in text.splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"not a JSON line: {line!r}") from None
    return records


def test_log_format_json_on_stderr_and_in_the_workspace_log(
        tmp_path: Path, procs: ProcessRegistry, shared_pki: Path) -> None:
    # Prepare
    plan = copy_plan("numpy_digits", tmp_path / "plan",
                     {**PLAN, "aggregator.rounds_to_train": 1})
    workspace = tmp_path / "ws"
    port = free_port()
    # Execute
    aggregator = procs.start(
        "--log-format", "json", "aggregator", "start", "-p", plan, "--pki-dir", shared_pki,
        "--workspace", workspace, "--port", str(port), name="aggregator", cwd=tmp_path)
    aggregator.stderr.wait_for(LISTENING, 60)
    collaborators = [
        procs.start("collaborator", "start", "-n", name, "-p", plan, "--pki-dir", shared_pki,
                    "--aggregator", f"127.0.0.1:{port}", name=name, cwd=tmp_path)
        for name in plan_collaborators(plan)]
    aggregator.wait_ok(120)
    for process in collaborators:
        process.wait_ok(60)
    # Assert: stderr is JSON lines only, with the context where known
    console = _json_lines(aggregator.stderr.text())
    assert all({"time", "level", "logger", "message"} <= set(r) for r in console)
    closed = [r for r in console if str(r["message"]).startswith("round 0 closed")]
    assert closed and closed[0]["round"] == 0 and closed[0]["federation"] == "numpy_digits"
    joined = [r for r in console if re.match(r"col\d joined", str(r["message"]))]
    assert {r["collaborator"] for r in joined} == set(plan_collaborators(plan))
    # ... and the workspace's log file holds the same records
    in_file = _json_lines((workspace / "logs" / "aggregator.log").read_text())
    assert [r["message"] for r in in_file] == [r["message"] for r in console]
    # the collaborators (text format) wrote theirs in the plan's workspace
    col_log = plan / "workspace" / "logs" / "collaborator-col1.log"
    assert "col1 joined at round 0" in col_log.read_text()


def test_piped_plan_run_prints_a_line_per_round_within_80_columns(
        tmp_path: Path, shared_pki: Path) -> None:
    # Prepare
    rounds = 3
    plan = copy_plan("numpy_digits", tmp_path / "plan",
                     {**PLAN, "aggregator.rounds_to_train": rounds})
    workspace = tmp_path / "ws"
    # Execute (stdout and stderr are pipes)
    result = run_fx("plan", "run", plan, "--pki-dir", shared_pki, "--workspace", workspace,
                    "--port", "0", cwd=tmp_path, timeout=180)
    # Assert
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    per_round = [line for line in lines if line.startswith("round ")]
    assert [line.split()[1] for line in per_round] == [str(r) for r in range(rounds + 1)], lines
    assert "final validation" in per_round[-1]
    assert "━" not in result.stderr  # no progress bar
    too_long = [line for line in lines if len(line) > 80 and str(workspace) not in line]
    assert not too_long, "\n".join(too_long)
    assert any("val acc" in line for line in lines)  # the table's header
    # the children's output went once into logs/ (captured), not twice (their own file)
    log = (workspace / "logs" / "aggregator.log").read_text()
    assert log.count("round 0 closed") == 1


def test_an_outage_and_its_recovery_are_in_the_logs(
        tmp_path: Path, procs: ProcessRegistry, shared_pki: Path) -> None:
    # Prepare: round 0 cannot close without col3, so col1 and col2 wait in their long-poll
    plan = copy_plan("numpy_digits", tmp_path / "plan",
                     {**PLAN, "aggregator.rounds_to_train": 1})
    fed = Federation(plan, shared_pki, tmp_path / "ws", free_port(), procs)
    first = fed.start_aggregator()
    col1 = fed.start_collaborator("col1")
    fed.start_collaborator("col2")
    first.stderr.wait_for(r"col1 joined at round 0", 60)
    fed.wait_status(lambda s: s.get("waiting_for") == ["col3"], timeout=60,
                    what="round 0 waiting only for col3")
    # Execute: the aggregator dies; later a new one resumes on the same port
    first.kill9()
    col1.stderr.wait_for(r"col1: connection to the aggregator lost \(.*UNAVAILABLE", 30)
    second = fed.start_aggregator()
    col1.stderr.wait_for(r"col1: reconnected to the aggregator after \d+\.\d s", 30)
    fed.start_collaborator("col3")
    # Assert: everyone finishes; the new aggregator logs col1 joining it
    second.wait_ok(120)
    for process in fed.collaborators.values():
        process.wait_ok(60)
    assert re.search(r"col1 joined at round 0", second.stderr.text())
    log = (fed.workspace / "logs" / "aggregator.log").read_text()
    assert log.count("col1 joined at round 0") == 2  # both processes appended to the file
