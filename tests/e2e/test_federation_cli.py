"""Federations through the real `fx` CLI: real processes, real certificates, mutual TLS.

The numpy plan keeps these fast; one Keras run (2 rounds) proves the TensorFlow path.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from openfl_like.data.digits import load_digits_test_set
from openfl_like.pki import PkiStore
from openfl_like.runners.registry import evaluate_weights

from .conftest import (
    AGGREGATOR,
    FINAL_ACCURACY,
    Federation,
    ProcessRegistry,
    copy_plan,
    free_port,
    load_npz,
    outputs_dir,
    plan_collaborators,
    run_fx,
)

pytestmark = pytest.mark.e2e

NUMPY_ROUNDS = 3
TABLE_CELL = r"[\s│┃|]"


def assert_round_table(stdout: str, rounds: int) -> None:
    """A header naming 'round' and one row per round with at least one decimal metric."""
    assert re.search(r"(?im)^.*\bround\b.*\bacc", stdout), stdout
    for r in range(rounds):
        row = re.compile(rf"(?m)^{TABLE_CELL}*{r}{TABLE_CELL}+.*\d\.\d+")
        assert row.search(stdout), f"no table row for round {r}:\n{stdout}"


def assert_outputs(workspace: Path, *, rounds: int, keras: bool = False) -> list[dict[str, object]]:
    """Every output of a finished federation exists and is well-formed; returns the history."""
    out = outputs_dir(workspace)
    for name in ("final_model.npz", "best_model.npz"):
        assert load_npz(out / name), f"{name} holds no tensors"
    if keras:
        assert (out / "final_model.keras").stat().st_size > 0
        assert (out / "best_model.keras").stat().st_size > 0
    history = json.loads((out / "metrics.json").read_text())
    trained = [r for r in history if r["kind"] == "train"]
    assert [r["round"] for r in trained] == list(range(rounds))
    csv_lines = (out / "metrics.csv").read_text().splitlines()
    assert csv_lines[0].startswith("round,") and len(csv_lines) == len(history) + 1
    assert (out / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events), events
    return history


# ---------------------------------------------------------------------------------------------
@pytest.mark.timeout(180)
def test_plan_run_numpy_makes_pki_and_outputs(tmp_path: Path, procs: ProcessRegistry) -> None:
    # Prepare: a plan copy and an empty folder for the PKI that `fx plan run` must create.
    plan = copy_plan("numpy_digits", tmp_path / "plan",
                     {"aggregator.rounds_to_train": NUMPY_ROUNDS})
    pki, workspace = tmp_path / "pki", tmp_path / "ws"

    # Execute
    run = procs.start("plan", "run", plan, "--pki-dir", pki, "--workspace", workspace,
                      "--port", str(free_port()), name="plan-run", cwd=tmp_path)
    run.wait_ok(150)

    # Assert: the closing line, the table, the PKI, the outputs.
    stdout = run.stdout.text()
    matches = FINAL_ACCURACY.findall(stdout)
    assert len(matches) == 1, stdout
    printed = float(matches[0])
    assert 0.8 <= printed <= 1.0, stdout
    assert stdout.rstrip().splitlines()[-1].startswith("final test accuracy:"), stdout
    assert_round_table(stdout, NUMPY_ROUNDS)
    store = PkiStore(pki)
    for name in (AGGREGATOR, *plan_collaborators(plan)):
        assert store.cert_path(name).is_file() and store.key_path(name).is_file(), name
    assert store.signing_cert_path.is_file() and store.crl_path.is_file()
    history = assert_outputs(workspace, rounds=NUMPY_ROUNDS)
    assert all(r["closed_by"] == "complete" for r in history), history
    # The printed accuracy is the final model's on the held-out split, recomputed here.
    x_test, y_test = load_digits_test_set(seed=0, test_fraction=0.2)
    final = load_npz(outputs_dir(workspace) / "final_model.npz")
    measured = evaluate_weights("numpy", final, x_test, y_test)["accuracy"]
    assert abs(measured - printed) < 0.0051, (measured, printed)


@pytest.mark.timeout(180)
def test_aggregator_and_collaborators_as_separate_processes(
    tmp_path: Path, procs: ProcessRegistry, shared_pki: Path
) -> None:
    # Prepare
    plan = copy_plan("numpy_digits", tmp_path / "plan",
                     {"aggregator.rounds_to_train": NUMPY_ROUNDS})
    fed = Federation(plan, shared_pki, tmp_path / "ws", free_port(), procs)
    names = plan_collaborators(plan)

    # Execute: the multi-process path a real deployment uses.
    fed.start_aggregator()
    for name in names:
        fed.start_collaborator(name)

    # Assert: everyone exits 0, collaborators with a summary naming themselves.
    for name in names:
        fed.collaborators[name].wait_ok(150)
        both = fed.collaborators[name].stdout.text() + fed.collaborators[name].stderr.text()
        assert name in both and "round" in both, both
    assert fed.aggregator is not None
    fed.aggregator.wait_ok(60)
    history = assert_outputs(fed.workspace, rounds=NUMPY_ROUNDS)
    for record in history:
        assert record["collaborators"] == sorted(names), record
        assert record["closed_by"] == "complete", record
    status = fed.status()
    assert status["phase"] == "done" and status["waiting_for"] == [], status
    assert status["last_round"]["metrics"]["aggregated_model_validation"]["accuracy"] > 0.8


@pytest.mark.keras
@pytest.mark.timeout(240)
def test_plan_run_keras_two_rounds(tmp_path: Path, procs: ProcessRegistry,
                                   shared_pki: Path) -> None:
    # Prepare: the demo plan cut to 2 rounds.
    plan = copy_plan("keras_digits", tmp_path / "plan", {"aggregator.rounds_to_train": 2})
    workspace = tmp_path / "ws"

    # Execute
    run = procs.start("plan", "run", plan, "--pki-dir", shared_pki, "--workspace", workspace,
                      "--port", str(free_port()), name="plan-run-keras", cwd=tmp_path)
    run.wait_ok(220)

    # Assert: two rounds trained, Keras models saved, a sensible accuracy after 2 rounds.
    stdout = run.stdout.text()
    matches = FINAL_ACCURACY.findall(stdout)
    assert len(matches) == 1, stdout
    assert 0.5 <= float(matches[0]) <= 1.0, stdout
    assert_round_table(stdout, 2)
    history = assert_outputs(workspace, rounds=2, keras=True)
    assert {len(r["collaborators"]) for r in history} == {3}, history


def test_plan_validate_prints_resolved_plan_and_digest(tmp_path: Path) -> None:
    # Prepare
    plan = copy_plan("numpy_digits", tmp_path / "plan", {"aggregator.rounds_to_train": 7})

    # Execute
    result = run_fx("plan", "validate", plan, cwd=tmp_path)

    # Assert: the resolved value and a hex digest are shown.
    assert result.returncode == 0, result.stderr
    assert "rounds_to_train" in result.stdout and "7" in result.stdout, result.stdout
    assert re.search(r"\b[0-9a-f]{16,64}\b", result.stdout), result.stdout
