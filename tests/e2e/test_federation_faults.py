"""Faults and bad input through the real `fx` CLI: crashes, dead sites, refusals.

Every refusal must be one `fx: error:` line with a non-zero exit and no traceback, and must leave
the running federation (and its saved state) untouched.
"""

from __future__ import annotations

import json
import re
import signal
import socket
from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    OUTSIDER,
    Federation,
    ProcessRegistry,
    assert_clean_error,
    assert_same_weights,
    copy_plan,
    free_port,
    load_npz,
    make_pki,
    outputs_dir,
    plan_collaborators,
    run_fx,
)

pytestmark = pytest.mark.e2e

# Refused collaborators must give up quickly rather than retry for the default two minutes.
FAST_GIVE_UP = {"network.retry_total_seconds": 8}
ROUND_CLOSED = r"round {} closed"


def history_of(workspace: Path) -> list[dict[str, Any]]:
    history: list[dict[str, Any]] = json.loads(
        (outputs_dir(workspace) / "metrics.json").read_text())
    return history


def federation_waits_only_for(name: str) -> Any:
    """Status predicate: a training round >= 1 in which everyone but ``name`` has delivered."""
    def check(status: dict[str, Any]) -> bool:
        assert status["phase"] not in ("done", "failed"), status
        return bool(status["round"] >= 1 and status["waiting_for"] == [name]
                    and status["results_in"] > 0)
    return check


# --------------------------------------------------------------------------------------- crashes
@pytest.mark.timeout(240)
def test_aggregator_killed_mid_round_resumes_to_the_uninterrupted_model(
    tmp_path: Path, procs: ProcessRegistry, shared_pki: Path
) -> None:
    # Prepare: one plan; an uninterrupted reference run of it first.
    plan = copy_plan("numpy_digits", tmp_path / "plan", {"aggregator.rounds_to_train": 5})
    names = plan_collaborators(plan)
    reference = tmp_path / "reference"
    run = procs.start("plan", "run", plan, "--pki-dir", shared_pki, "--workspace", reference,
                      "--port", str(free_port()), name="reference-run", cwd=tmp_path)
    run.wait_ok(150)
    fed = Federation(plan, shared_pki, tmp_path / "ws", free_port(), procs)
    aggregator = fed.start_aggregator()
    for name in names:
        fed.start_collaborator(name)
    aggregator.stderr.wait_for(ROUND_CLOSED.format(0), 60)
    # Freeze the last collaborator: the round it is in stays open with the others' results in.
    laggard = fed.collaborators[names[-1]]
    laggard.signal_group(signal.SIGSTOP)
    before = fed.wait_status(federation_waits_only_for(names[-1]), timeout=60,
                             what=f"a round >= 1 waiting only for {names[-1]}")

    # Execute: kill -9 in the middle of that round, restart on the same port, thaw the laggard.
    aggregator.kill9()
    restarted = fed.start_aggregator()
    restarted.stderr.wait_for(rf"resum\w* .*round {before['round']}", 30)
    laggard.signal_group(signal.SIGCONT)

    # Assert: everyone finishes, and the model is bit-for-bit the uninterrupted one.
    for name in names:
        fed.collaborators[name].wait_ok(150)
    restarted.wait_ok(60)
    for name in ("final_model.npz", "best_model.npz"):
        assert_same_weights(load_npz(outputs_dir(fed.workspace) / name),
                            load_npz(outputs_dir(reference) / name))
    ours, theirs = history_of(fed.workspace), history_of(reference)
    assert [r["round"] for r in ours] == [r["round"] for r in theirs]
    for mine, ref in zip(ours, theirs, strict=True):
        # Each result counted once: the same sample counts and metrics as without the crash.
        assert mine["metrics"] == ref["metrics"], (mine["round"], mine["metrics"], ref["metrics"])
        assert mine["per_collaborator"] == ref["per_collaborator"], mine["round"]


@pytest.mark.timeout(180)
def test_collaborator_killed_mid_round_round_closes_at_deadline(
    tmp_path: Path, procs: ProcessRegistry, shared_pki: Path
) -> None:
    # Prepare: a short deadline and a quorum of 2 of the 3 collaborators.
    deadline = 4.0
    plan = copy_plan("numpy_digits", tmp_path / "plan", {
        "aggregator.rounds_to_train": 2,
        "stragglers.enabled": True,
        "stragglers.round_deadline_seconds": deadline,
        "stragglers.min_collaborators": 2,
        "stragglers.on_deadline_without_quorum": "wait",
        # longer than the deadline, so the deadline closes the late rounds; after the last one
        # the aggregator waits this long at most for the victim to hear that it is over
        "stragglers.liveness_timeout_seconds": 15,
    })
    names = plan_collaborators(plan)
    victim, survivors = names[-1], names[:-1]
    fed = Federation(plan, shared_pki, tmp_path / "ws", free_port(), procs)
    aggregator = fed.start_aggregator()
    for name in names:
        fed.start_collaborator(name)
    aggregator.stderr.wait_for(ROUND_CLOSED.format(0), 60)
    fed.collaborators[victim].signal_group(signal.SIGSTOP)
    fed.wait_status(federation_waits_only_for(victim), timeout=30,
                    what=f"a round >= 1 waiting only for {victim}")

    # Execute
    fed.collaborators[victim].kill9()

    # Assert: the survivors and the aggregator finish; late rounds closed by the deadline.
    for name in survivors:
        fed.collaborators[name].wait_ok(120)
    aggregator.wait_ok(60)
    history = history_of(fed.workspace)
    assert any(r["collaborators"] == names for r in history), history  # all 3 before the kill
    late = [r for r in history if victim not in r["collaborators"]]
    assert late, history
    for record in late:
        assert record["closed_by"] == "deadline", record
        assert record["collaborators"] == survivors and record["missing"] == [victim], record
        assert record["duration_seconds"] >= deadline - 0.05, record
    assert load_npz(outputs_dir(fed.workspace) / "final_model.npz")


# --------------------------------------------------------------------------------------- bad input
def test_invalid_plan_is_one_error_line(tmp_path: Path, shared_pki: Path) -> None:
    # Prepare
    plan = copy_plan("numpy_digits", tmp_path / "plan", {"aggregator.rounds_to_train": -1})
    workspace = tmp_path / "ws"

    # Execute
    validate = run_fx("plan", "validate", plan, cwd=tmp_path)
    start = run_fx("aggregator", "start", "-p", plan, "--pki-dir", shared_pki,
                   "--workspace", workspace, "--port", "0", cwd=tmp_path, timeout=60)
    plan_run = run_fx("plan", "run", plan, "--pki-dir", tmp_path / "pki", "--workspace",
                      workspace, "--port", "0", cwd=tmp_path, timeout=60)

    # Assert: the exact line and exit 2 from validate; the same refusal elsewhere; nothing made.
    line = assert_clean_error(validate)
    assert line == "fx: error: plan.yaml: aggregator.rounds_to_train: must be >= 0 (got -1)"
    assert validate.returncode == 2
    for result in (start, plan_run):
        assert assert_clean_error(result) == line
    assert not (workspace / "state").exists()


@pytest.mark.timeout(120)
def test_collaborator_not_in_cols_yaml_is_refused(
    tmp_path: Path, procs: ProcessRegistry, shared_pki: Path
) -> None:
    # Prepare: a running aggregator; col9 holds a valid certificate of the same CA. One col9 uses
    # the federation's plan (its own check refuses), one a copy whose cols.yaml lists it (so only
    # the aggregator can refuse it).
    plan = copy_plan("numpy_digits", tmp_path / "plan", FAST_GIVE_UP)
    names = tuple(plan_collaborators(plan))
    tampered = copy_plan("numpy_digits", tmp_path / "plan-col9", FAST_GIVE_UP,
                         collaborators=(*names, OUTSIDER))
    fed = Federation(plan, shared_pki, tmp_path / "ws", 0, procs)  # --port 0: it picks one
    aggregator = fed.start_aggregator()

    # Execute
    outsider = fed.start_collaborator(OUTSIDER)
    outsider.wait(60)
    intruder = fed.start_collaborator(OUTSIDER, label="col9-tampered-plan", plan_dir=tampered)
    intruder.wait(60)

    # Assert: one clear line naming it, each time; the aggregator is unaffected.
    assert_clean_error(outsider, mentions=(OUTSIDER,))
    line = assert_clean_error(intruder, mentions=(OUTSIDER,))
    assert re.search(r"not (an? )?(authori[sz]ed|collaborator|participant)|permission", line,
                     re.IGNORECASE), line
    assert aggregator.alive()
    status = fed.status()
    assert status["round"] == 0 and status["results_in"] == 0, status
    assert OUTSIDER not in status["collaborators"], status


@pytest.mark.timeout(120)
def test_missing_certificates_are_refused(tmp_path: Path, shared_pki: Path) -> None:
    # Prepare: a plan and an empty certificate folder.
    plan = copy_plan("numpy_digits", tmp_path / "plan", FAST_GIVE_UP)
    empty = tmp_path / "empty-pki"
    empty.mkdir()
    workspace = tmp_path / "ws"

    # Execute
    collaborator = run_fx("collaborator", "start", "-n", "col1", "-p", plan, "--pki-dir", empty,
                          "--aggregator", f"127.0.0.1:{free_port()}", cwd=tmp_path, timeout=60)
    aggregator = run_fx("aggregator", "start", "-p", plan, "--pki-dir", empty,
                        "--workspace", workspace, "--port", "0", cwd=tmp_path, timeout=60)

    # Assert
    assert_clean_error(collaborator, mentions=("col1",))
    assert_clean_error(aggregator)
    assert list(empty.iterdir()) == [], "a refused start must not write into the PKI folder"


@pytest.mark.timeout(120)
def test_certificate_from_another_ca_is_refused(
    tmp_path: Path, procs: ProcessRegistry, shared_pki: Path
) -> None:
    # Prepare: a running aggregator of our CA; a col1 certified by an unrelated CA.
    plan = copy_plan("numpy_digits", tmp_path / "plan", FAST_GIVE_UP)
    foreign = make_pki(tmp_path / "foreign-pki", ("col1",)).root
    fed = Federation(plan, shared_pki, tmp_path / "ws", free_port(), procs)
    aggregator = fed.start_aggregator()

    # Execute
    impostor = fed.start_collaborator("col1", label="col1-foreign", pki_dir=foreign)
    impostor.wait(60)

    # Assert
    assert_clean_error(impostor)
    assert aggregator.alive()
    status = fed.status()
    assert status["round"] == 0 and status["results_in"] == 0, status


@pytest.mark.timeout(90)
def test_aggregator_port_in_use_is_refused(tmp_path: Path, shared_pki: Path) -> None:
    # Prepare: someone else listens on the port.
    plan = copy_plan("numpy_digits", tmp_path / "plan")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]

        # Execute
        result = run_fx("aggregator", "start", "-p", plan, "--pki-dir", shared_pki,
                        "--workspace", tmp_path / "ws", "--port", str(port), cwd=tmp_path,
                        timeout=60)

    # Assert
    assert_clean_error(result, mentions=(str(port),))


@pytest.mark.timeout(180)
@pytest.mark.parametrize("second_host", [False, True], ids=["same-host", "other-host"])
def test_same_collaborator_twice_second_is_refused_first_completes(
    tmp_path: Path, procs: ProcessRegistry, shared_pki: Path, second_host: bool
) -> None:
    # Prepare: the aggregator and the first col1; round 0 cannot close without the others.
    plan = copy_plan("numpy_digits", tmp_path / "plan",
                     {"aggregator.rounds_to_train": 2, **FAST_GIVE_UP})
    names = plan_collaborators(plan)
    fed = Federation(plan, shared_pki, tmp_path / "ws", free_port(), procs)
    aggregator = fed.start_aggregator()
    first = fed.start_collaborator("col1")
    fed.wait_status(lambda s: bool(s["collaborators"]["col1"]["active"]), timeout=60,
                    what="col1 to be active")

    # Execute: the same identity again (from another workspace, as another host would run it,
    # or from the same one), then the rest of the federation.
    elsewhere = tmp_path / "other-host" if second_host else None
    second = fed.start_collaborator("col1", label="col1-again", workspace=elsewhere)
    second.wait(30)
    for name in names[1:]:
        fed.start_collaborator(name)

    # Assert: the duplicate was refused clearly; the federation completed with the first.
    assert_clean_error(second, mentions=("col1",))
    first.wait_ok(120)
    for name in names[1:]:
        fed.collaborators[name].wait_ok(120)
    aggregator.wait_ok(60)
    history = history_of(fed.workspace)
    assert all(r["collaborators"] == names for r in history), history
