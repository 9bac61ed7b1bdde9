"""What the README's multi-host walk-through promises, through the real CLI: a collaborator with
another plan is told the settings that differ; a server certificate that does not name the host
dialled is fatal at once; `fx aggregator start` refuses a finished federation and `--fresh`
archives it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from .conftest import (
    LISTENING,
    Federation,
    ProcessRegistry,
    assert_clean_error,
    copy_plan,
    fx_env,
    outputs_dir,
    plan_collaborators,
    run_fx,
)

pytestmark = pytest.mark.e2e

LONG_RETRY = "120"  # seconds: a refusal that waited for it would fail the timing asserts


def _read_status(path: Path, *, timeout: float) -> dict[str, object]:
    """The status file, once the aggregator has written it (just after its listening line)."""
    end = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < end, f"no {path} after {timeout:g} s"
        time.sleep(0.05)
    status: dict[str, object] = json.loads(path.read_text())
    return status


@pytest.mark.timeout(120)
def test_a_collaborator_with_another_plan_is_told_the_setting(
        tmp_path: Path, procs: ProcessRegistry, shared_pki: Path) -> None:
    # Prepare: the aggregator's plan trains 10 rounds; col1's own copy says 5
    plan = copy_plan("numpy_digits", tmp_path / "agg-plan", {"aggregator.rounds_to_train": 10})
    theirs = copy_plan("numpy_digits", tmp_path / "col1-plan", {"aggregator.rounds_to_train": 5})
    fed = Federation(plan, shared_pki, tmp_path / "ws", 0, procs)
    fed.start_aggregator()
    # Execute
    col1 = fed.start_collaborator("col1", plan_dir=theirs, workspace=tmp_path / "col1-ws")
    code = col1.wait(60)
    # Assert: one line naming the setting, not two federation ids
    line = assert_clean_error(col1)
    assert code != 0
    assert "aggregator.rounds_to_train: 10 here, 5 at collaborator col1" in line, line
    assert "federation_uuid" not in line, line


@pytest.mark.timeout(120)
def test_a_server_certificate_for_another_name_is_fatal_at_once(
        tmp_path: Path, procs: ProcessRegistry) -> None:
    # Prepare: the aggregator's certificate names only other.example; col1 dials 127.0.0.1
    plan = copy_plan("numpy_digits", tmp_path / "plan")
    for args in (("pki", "init"),
                 ("pki", "certify", "--name", "aggregator", "--role", "aggregator",
                  "--san", "other.example"),
                 ("pki", "certify", "--name", "col1", "--role", "collaborator")):
        result = run_fx(*args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    aggregator = procs.start("aggregator", "start", "-p", plan, "--port", "0",
                             "--workspace", tmp_path / "ws", name="aggregator", cwd=tmp_path)
    port = int(aggregator.stderr.wait_for(LISTENING, 60).group(1))
    # Execute
    started = time.monotonic()
    col1 = procs.start("collaborator", "start", "-n", "col1", "-p", plan,
                       "--aggregator", f"127.0.0.1:{port}", name="col1", cwd=tmp_path,
                       env=fx_env(FX_RETRY_TOTAL_SECONDS=LONG_RETRY))
    code = col1.wait(60)
    elapsed = time.monotonic() - started
    # Assert: well under the retry window, one line naming both sides
    line = assert_clean_error(col1)
    assert code != 0 and elapsed < 20, (code, elapsed)
    assert "does not name '127.0.0.1'" in line and "it names: other.example" in line, line


@pytest.mark.timeout(180)
def test_a_finished_federation_is_refused_and_fresh_archives_it(
        tmp_path: Path, procs: ProcessRegistry, shared_pki: Path) -> None:
    # Prepare: one finished federation in the workspace
    plan = copy_plan("numpy_digits", tmp_path / "plan", {"aggregator.rounds_to_train": 2})
    fed = Federation(plan, shared_pki, tmp_path / "ws", 0, procs)
    fed.start_aggregator()
    for name in plan_collaborators(plan):
        fed.start_collaborator(name)
    assert fed.aggregator is not None
    fed.aggregator.wait_ok(120)
    final = json.loads((outputs_dir(fed.workspace) / "final_metrics.json").read_text())
    old_model = (outputs_dir(fed.workspace) / "final_model.npz").read_bytes()
    # Execute: start it again, without and then with --fresh
    base = ("aggregator", "start", "-p", plan, "--pki-dir", shared_pki, "--workspace",
            fed.workspace, "--port", "0")
    refused = run_fx(*base, cwd=tmp_path, timeout=60)
    again = procs.start(*base, "--fresh", name="fresh", cwd=tmp_path)
    again.stderr.wait_for(LISTENING, 60)
    # Assert: the refusal names the finished run and what to do; --fresh moved it aside
    line = assert_clean_error(refused)
    assert "federation numpy_digits already finished at round" in line, line
    assert f"final test accuracy {final['test_accuracy']:.4f}" in line, line
    assert "use --fresh to start a new run, the old one is archived" in line, line
    archives = list((fed.workspace / "archive").iterdir())
    assert len(archives) == 1, archives
    archived = archives[0]
    assert (archived / "outputs" / "final_model.npz").read_bytes() == old_model
    assert json.loads((archived / "state" / "state.json").read_text())["done"] is True
    status = _read_status(fed.workspace / "status.json", timeout=30)
    assert status["round"] == 0 and status["phase"] != "done", status
    assert not (outputs_dir(fed.workspace) / "final_model.npz").exists()
