"""Terminating signals through the real `fx` CLI: nothing is orphaned, nothing is lost.

- `fx plan run` told SIGTERM or SIGHUP stops the aggregator and every collaborator, exits
  128+signal with one line naming `--resume`, and leaves a run that is refused without --fresh.
- `fx collaborator start` told SIGTERM/SIGINT while it waits for work exits 0 at once with one
  line, and rejoins when started again.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    LISTENING,
    Federation,
    ProcessRegistry,
    assert_clean_error,
    copy_plan,
    free_port,
    fx_env,
    run_fx,
)

pytestmark = pytest.mark.e2e

LONG_RUN = {  # hundreds of fast rounds: long enough to be signalled mid-federation
    "aggregator.rounds_to_train": 500,
    "aggregator.write_tensorboard": False,
    "aggregator.write_plot": False,
}


def processes_mentioning(text: str) -> dict[int, str]:
    """Live processes whose command line contains ``text`` (zombies have none)."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if text in cmdline:
                found[int(entry.name)] = cmdline
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_until(predicate: Any, *, timeout: float, what: str, report: Any = None) -> Any:
    """Poll ``predicate`` (a cheap file or /proc read) until it returns something truthy."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n"
                         f"{report() if report else ''}")


def read_status(workspace: Path) -> dict[str, Any]:
    try:
        status: dict[str, Any] = json.loads((workspace / "status.json").read_text())
    except (OSError, ValueError):
        return {}
    return status


@pytest.mark.timeout(90)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_plan_run_stopped_by_signal_leaves_no_process_and_a_resumable_run(
    tmp_path: Path, procs: ProcessRegistry, shared_pki: Path, sig: signal.Signals
) -> None:
    # Prepare: a long federation, running (round >= 1: every participant is up and working).
    plan = copy_plan("numpy_digits", tmp_path / "plan", LONG_RUN)
    workspace = tmp_path / "ws"
    launcher = procs.start("plan", "run", plan, "--pki-dir", shared_pki, "--workspace",
                           workspace, "--port", str(free_port()), name="launcher", cwd=tmp_path)
    wait_until(lambda: read_status(workspace).get("round", 0) >= 1, timeout=60,
               what="round 1 of the federation", report=procs.report)
    children = wait_until(
        lambda: {p: c for p, c in processes_mentioning(str(workspace)).items()
                 if p != launcher.pid and " start " in c},
        timeout=10, what="the launcher's children")
    assert len(children) == 4, children  # the aggregator and three collaborators

    # Execute: the signal goes to the launcher alone (its children have their own sessions).
    started = time.monotonic()
    os.kill(launcher.pid, sig)
    code = launcher.wait(30)

    # Assert: bounded exit, 128+signal, one line with the way on, and no survivor.
    assert code == 128 + int(sig), launcher.output()
    assert time.monotonic() - started < 20
    stderr = launcher.stderr.text()
    lines = [line for line in stderr.splitlines() if f"stopped by {sig.name}" in line]
    assert len(lines) == 1 and "--resume" in lines[0], stderr
    assert "Traceback" not in stderr
    assert not [pid for pid in children if alive(pid)], children
    assert processes_mentioning(str(workspace)) == {}

    # ... and the saved run is unfinished: a plain `fx plan run` refuses to discard it.
    state = json.loads((workspace / "state" / "state.json").read_text())
    assert not state["done"] and not state["failed"]
    again = run_fx("plan", "run", plan, "--pki-dir", shared_pki, "--workspace", workspace,
                   "--port", str(free_port()), cwd=tmp_path, timeout=60)
    assert_clean_error(again, mentions=("--resume", "--fresh"))
    assert (workspace / "state" / "state.json").exists()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_collaborator_stopped_while_waiting_exits_0_and_can_rejoin(
    tmp_path: Path, procs: ProcessRegistry, shared_pki: Path, sig: signal.Signals
) -> None:
    # Prepare: two collaborators, only col1 started: after round 0's work it long-polls
    # (30 s per poll) for a round that waits for col2.
    plan = copy_plan("numpy_digits", tmp_path / "plan", {"aggregator.rounds_to_train": 2},
                     collaborators=("col1", "col2"))
    fed = Federation(plan, shared_pki, tmp_path / "ws", 0, procs)
    fed.aggregator = procs.start(
        "aggregator", "start", "-p", plan, "--pki-dir", shared_pki, "--workspace",
        fed.workspace, "--port", "0", name="aggregator", cwd=tmp_path,
        env=fx_env(FX_INSTANCE_TAKEOVER_SECONDS="60"),  # no waiting out a takeover here
    )
    fed.port = int(fed.aggregator.stderr.wait_for(LISTENING, 60).group(1))
    col1 = fed.start_collaborator("col1")
    fed.wait_status(lambda s: s["waiting_for"] == ["col2"] and s["results_in"] > 0,
                    timeout=60, what="round 0 waiting only for col2")

    # Execute
    started = time.monotonic()
    os.kill(col1.pid, sig)
    code = col1.wait(15)

    # Assert: exit 0 well within one long-poll, with the one line.
    assert code == 0, col1.output()
    assert time.monotonic() - started < 10
    expected = f"collaborator col1 stopped by {sig.name}; start it again to rejoin"
    assert expected in col1.stdout.text() + col1.stderr.text(), col1.output()
    assert "Traceback" not in col1.stderr.text()

    if sig is signal.SIGTERM:  # once is enough: started again, it rejoins and finishes
        # The stopped process said it was leaving, so its successor is not refused as a second
        # instance of col1 (which it would be for 60 s otherwise).
        col1 = fed.start_collaborator("col1", label="col1-again")
        col2 = fed.start_collaborator("col2")
        col1.wait_ok(60)
        col2.wait_ok(60)
        assert fed.aggregator is not None
        fed.aggregator.wait_ok(60)
