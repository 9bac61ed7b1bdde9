"""The director workflow end to end: `fx director start`, `fx envoy start`, `fx experiment ...`.

Every party is its own process over mutual TLS with certificates of our PKI. The experiments
train a numpy model (seconds, not minutes): these tests are about the workflow (submission,
streaming, envoys that die, a director that is killed, refusals), not about the model.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from openfl_like.data.digits import load_digits_test_set
from openfl_like.runners.registry import evaluate_weights
from tests.e2e.conftest import ProcessRegistry, assert_clean_error, load_npz, run_fx
from tests.e2e.director_lab import DirectorLab, numpy_plan

pytestmark = pytest.mark.e2e

NUMPY_PARAMS = {"model": "softmax", "optimizer": "sgd", "learning_rate": 0.1}


@pytest.fixture
def lab(tmp_path: Path, procs: ProcessRegistry) -> DirectorLab:
    return DirectorLab(tmp_path, procs)


def _started_lab(lab: DirectorLab, envoys: tuple[str, ...] = ("env_a", "env_b")) -> DirectorLab:
    lab.start_director()
    for name in envoys:
        lab.start_envoy(name)
    lab.wait_envoys_online(envoys)
    return lab


def test_experiment_streams_metrics_and_the_model_gives_the_reported_accuracy(
        lab: DirectorLab) -> None:
    _started_lab(lab)
    submitted = lab.submit("digits1", numpy_plan(rounds=3))
    assert submitted.returncode == 0, submitted.stderr
    follow = lab.fx_ok("experiment", "metrics", "digits1", timeout=180)
    lines = follow.stdout.splitlines()
    # aggregated metrics of every round reached the submitter, in order, once each
    rounds = [int(line.split("round ")[1].split()[0]) for line in lines
              if line.startswith("[aggregator] round ")]
    assert rounds, follow.stdout
    assert rounds == sorted(rounds), follow.stdout
    assert {0, 1, 2} <= set(rounds), follow.stdout
    # and each envoy's own task metrics
    for envoy in ("env_a", "env_b"):
        assert any(line.startswith(f"[{envoy}] round ") for line in lines), follow.stdout
    assert "experiment digits1 finished" in follow.stdout, follow.stdout
    status = lab.status("digits1")
    assert status["state"] == "finished", status
    reported = status["final_metrics"]["test_accuracy"]
    # the downloaded model, evaluated here on the same held-out split, gives that accuracy
    out = lab.root / "last.npz"
    lab.fx_ok("experiment", "model", "digits1", "--last", "-o", out)
    x, y = load_digits_test_set()
    scores = evaluate_weights("numpy", load_npz(out), x, y, **NUMPY_PARAMS)
    assert scores["accuracy"] == pytest.approx(reported, abs=1e-6)
    assert reported > 0.8
    # the list shows it
    listed = json.loads(lab.fx_ok("experiment", "list", "--json").stdout)
    assert [row["name"] for row in listed] == ["digits1"]
    # validating that model at the envoys (no training) gives what the last round measured
    folder = lab.root / "experiments" / "digits1"
    checked = lab.fx_ok("experiment", "validate", folder, "--model", out, "--name", "check1",
                        timeout=180)
    assert "weighted:" in checked.stdout, checked.stdout
    validation = lab.status("check1")["validation"]
    assert set(validation["per_envoy"]) == {"env_a", "env_b"}
    trained = status["last_metrics"]["aggregated_model_validation"]["accuracy"]
    assert validation["weighted"]["accuracy"] == pytest.approx(trained, abs=1e-9)


def test_two_experimenters_at_once_and_neither_sees_the_other(lab: DirectorLab) -> None:
    _started_lab(lab)
    results: dict[str, int] = {}

    def submit(user: str) -> None:
        results[user] = lab.submit(f"exp-{user}", numpy_plan(rounds=2), user=user).returncode

    threads = [threading.Thread(target=submit, args=(u,)) for u in ("alice", "bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {"alice": 0, "bob": 0}
    for user in ("alice", "bob"):
        lab.wait_state(f"exp-{user}", ("finished",), timeout=180, user=user)
    # bob cannot read alice's experiment, its metrics or its model
    for args in (("experiment", "status", "exp-alice"), ("experiment", "metrics", "exp-alice"),
                 ("experiment", "model", "exp-alice", "-o", str(lab.root / "stolen.npz"))):
        refused = lab.fx(*args, user="bob")
        assert_clean_error(refused, mentions=("belongs to another experimenter",))
    assert not (lab.root / "stolen.npz").exists()
    assert [r["name"] for r in json.loads(
        lab.fx_ok("experiment", "list", "--json", user="bob").stdout)] == ["exp-bob"]


def test_an_envoy_killed_mid_experiment_goes_offline_and_the_quorum_finishes(
        lab: DirectorLab) -> None:
    _started_lab(lab, ("env_a", "env_b", "env_c"))
    plan = numpy_plan(rounds=40, min_collaborators=2, deadline=4, liveness=2, epochs=3)
    assert lab.submit("quorum", plan).returncode == 0
    lab.wait_for(lambda s: (s.get("round") or 0) >= 1, lambda: lab.status("quorum"),
                 timeout=120, what="round 1 started")
    lab.envoys["env_c"].kill9()
    killed_at = time.monotonic()
    lab.wait_for(lambda rows: any(r["name"] == "env_c" and not r["online"] for r in rows),
                 lab.envoy_rows, timeout=20, what="env_c offline")
    offline_after = time.monotonic() - killed_at
    # two heartbeat periods (1 s each) plus the time the CLI calls take
    assert offline_after < 2 * lab.heartbeat_seconds + 6, offline_after
    final = lab.wait_state("quorum", ("finished", "failed"), timeout=300)
    assert final["state"] == "finished", final
    assert final["envoys"]["env_c"]["online"] is False


def test_director_killed_with_kill9_restarts_with_its_experiments_and_finishes_one(
        lab: DirectorLab) -> None:
    """The experiment is held mid-run on purpose (env_b reviews it), so the kill lands while
    its aggregator is running whatever the machine's speed."""
    lab.start_director()
    lab.start_envoy("env_a")
    lab.start_envoy("env_b", config="envoy_review.yaml")
    lab.wait_envoys_online(("env_a", "env_b"))
    approve = ["envoy", "approve", "-n", "env_b", "-c", str(lab.root / "envoy_review.yaml")]
    assert lab.submit("before", numpy_plan(rounds=1)).returncode == 0
    lab.wait_for(lambda s: "env_b" in (s.get("awaiting_approval") or []),
                 lambda: lab.status("before"), timeout=60, what="before awaiting env_b")
    assert run_fx(*approve[:2], "before", *approve[2:], cwd=lab.root).returncode == 0
    lab.wait_state("before", ("finished",), timeout=120)
    assert lab.submit("survivor", numpy_plan(rounds=3)).returncode == 0
    # running: its aggregator listens (its state is on disk); round 0 waits for env_b
    held = lab.wait_for(lambda s: s.get("state") == "running"
                        and "env_b" in (s.get("awaiting_approval") or []),
                        lambda: lab.status("survivor"), timeout=60,
                        what="survivor running, held at env_b")
    assert held["aggregator"], held
    assert lab.director is not None
    lab.director.kill9()
    lab.start_director()
    listed = {r["name"]: r["state"] for r in json.loads(
        lab.fx_ok("experiment", "list", "--json").stdout)}
    assert listed == {"before": "finished", "survivor": listed["survivor"]}
    assert listed["survivor"] in ("starting", "running"), listed
    assert run_fx(*approve[:2], "survivor", *approve[2:], cwd=lab.root).returncode == 0
    final = lab.wait_state("survivor", ("finished", "failed"), timeout=180)
    assert final["state"] == "finished", final
    assert final["final_metrics"]["test_accuracy"] > 0.7
    # it finished because the restarted director relaunched its aggregator, which resumed
    logs = lab.fx_ok("experiment", "logs", "survivor").stdout
    assert "resuming federation" in logs, logs


def test_a_reviewing_envoy_holds_an_experiment_until_its_operator_decides(
        lab: DirectorLab) -> None:
    lab.start_director()
    lab.start_envoy("env_a")
    lab.start_envoy("env_b", config="envoy_review.yaml")
    lab.wait_envoys_online(("env_a", "env_b"))
    review = ["-n", "env_b", "-c", str(lab.root / "envoy_review.yaml")]
    # approved: the experimenter sees it wait at env_b, then it runs to the end
    assert lab.submit("reviewed", numpy_plan(rounds=1)).returncode == 0
    waiting = lab.wait_for(lambda s: "env_b" in (s.get("awaiting_approval") or []),
                           lambda: lab.status("reviewed"), timeout=60,
                           what="reviewed awaiting env_b's approval")
    assert waiting["state"] == "awaiting_approval", waiting
    approved = run_fx("envoy", "approve", "reviewed", *review, cwd=lab.root)
    assert approved.returncode == 0, approved.stderr
    assert lab.wait_state("reviewed", ("finished", "failed"), timeout=120)["state"] == "finished"
    # rejected: the reason reaches the experimenter
    assert lab.submit("refused", numpy_plan(rounds=1, min_collaborators=2)).returncode == 0
    lab.wait_for(lambda s: "env_b" in (s.get("awaiting_approval") or []),
                 lambda: lab.status("refused"), timeout=60, what="refused awaiting env_b")
    rejected = run_fx("envoy", "reject", "refused", *review, "--reason", "not on weekends",
                      cwd=lab.root)
    assert rejected.returncode == 0, rejected.stderr
    final = lab.wait_state("refused", ("failed",), timeout=60)
    assert final["envoys"]["env_b"]["state"] == "rejected", final
    assert "not on weekends" in final["envoys"]["env_b"]["reason"], final


# ------------------------------------------------------------------------------ refusals

def test_refusals_name_their_reason(lab: DirectorLab) -> None:
    _started_lab(lab)
    # an envoy's certificate calling an experimenter RPC
    refused = lab.fx("experiment", "list", user="env_a")
    assert_clean_error(refused, mentions=("role envoy", "experimenter certificates only"))
    # a plan with a module:attr object, whatever allow_custom_objects says
    custom = numpy_plan(rounds=1)
    custom["task_runner"] = {"name": "mypkg.runner:Runner", "allow_custom_objects": True}
    assert_clean_error(lab.submit("custom", custom), mentions=("custom",))
    # a plan no registered dataset matches: the difference is named per envoy
    other = numpy_plan(rounds=1)
    other["data_contract"]["classes"] = ["cat", "dog"]
    line = assert_clean_error(lab.submit("nomatch", other), mentions=("classes",))
    assert "env_a" in line and "env_b" in line
    # an oversize package (the director's limit is 8 MiB)
    big = lab.root / "big.npz"
    np.savez(big, w=np.zeros(3 * 1024 * 1024, dtype=np.float32))
    assert_clean_error(lab.submit("big", numpy_plan(rounds=1), model=big),
                       mentions=("limit",))
    # nothing of the refused ones was kept
    assert json.loads(lab.fx_ok("experiment", "list", "--json").stdout) == []


def test_a_keras_model_with_a_lambda_layer_is_refused(lab: DirectorLab) -> None:
    keras = pytest.importorskip("keras")
    inputs = keras.Input((64,))
    outputs = keras.layers.Dense(10, activation="softmax")(
        keras.layers.Lambda(lambda t: t * 2.0)(inputs))
    path = lab.root / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    _started_lab(lab)
    plan = numpy_plan(rounds=1)
    plan["task_runner"] = {"name": "keras", "params": {"model": "model.keras"}}
    assert_clean_error(lab.submit("lambda", plan, model=path), mentions=("lambda",))
