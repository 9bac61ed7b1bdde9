"""The parties' protocol (vertical.training) over two real Communicators on the in-memory link,
with a numpy split model: agreement, reader states, checkpoints, resume, mismatch, stop."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from openfl_like.core.errors import DataError, PlanMismatchError
from openfl_like.core.vertical import PartyRole, PeerGoneError
from openfl_like.plan.vertical_config import VerticalPlan, parse_vertical_plan
from openfl_like.vertical.checkpoints import CheckpointStore
from openfl_like.vertical.party_data import PartyData, Split, load_party_data
from openfl_like.vertical.training import PartyResult, PartyTraining
from tests.unit.vertical.conftest import make_pair, start_both
from tests.unit.vertical.numpy_halves import NumpyFollower, NumpyLeader


def _plan(tmp_path: Path, epochs: int = 2) -> VerticalPlan:
    doc = {"session_id": "test-session",
           "leader": {"name": "shop", "address": "127.0.0.1:1"},
           "follower": {"name": "bank", "address": "127.0.0.1:2"},
           "model": {"epochs": epochs, "batch_size": 64},
           "checkpoint": {"every_steps": 5, "keep": 3}}
    return parse_vertical_plan(doc, plan_file=tmp_path / "plan.yaml")


class Outcome:
    def __init__(self) -> None:
        self.results: dict[PartyRole, PartyResult] = {}
        self.errors: dict[PartyRole, BaseException] = {}
        self.lines: dict[PartyRole, list[str]] = {PartyRole.LEADER: [], PartyRole.FOLLOWER: []}
        self.halves: dict[PartyRole, Any] = {}


def _numpy_halves(plan: VerticalPlan) -> Callable[[PartyRole, int], Any]:
    def make(role: PartyRole, features: int) -> Any:
        if role is PartyRole.LEADER:
            return NumpyLeader(features, plan.model.embedding_dim)
        return NumpyFollower(features, plan.model.embedding_dim)

    return make


def run_pair(plan: VerticalPlan, root: Path, *,
             data: dict[PartyRole, PartyData] | None = None,
             stop: dict[PartyRole, Callable[[], None]] | None = None) -> Outcome:
    return run_pair_with(plan, root, _numpy_halves(plan), data=data, stop=stop)


def run_pair_with(plan: VerticalPlan, root: Path, halves: Callable[[PartyRole, int], Any], *,
                  data: dict[PartyRole, PartyData] | None = None,
                  stop: dict[PartyRole, Callable[[], None]] | None = None,
                  follower_plan: VerticalPlan | None = None) -> Outcome:
    """Both parties in two threads, each shutting its communicator down at its end."""
    leader_comm, follower_comm = make_pair()
    start_both(leader_comm, follower_comm)
    outcome = Outcome()

    def party(role: PartyRole, comm: Any) -> None:
        plan_here = follower_plan if role is PartyRole.FOLLOWER and follower_plan else plan
        own = (data or {}).get(role) or load_party_data(plan, role)
        half = halves(role, own.num_features)
        outcome.halves[role] = half
        store = CheckpointStore(root / plan.party(role).name, keep=plan.checkpoint.keep)
        training = PartyTraining(plan_here, role, comm, own, half, store,
                                 check_stop=(stop or {}).get(role, lambda: None),
                                 progress=outcome.lines[role].append)
        try:
            outcome.results[role] = training.run()
        except BaseException as error:
            outcome.errors[role] = error
            comm.shutdown(f"error: {error}")
        else:
            comm.shutdown("done")

    threads = [threading.Thread(target=party, args=(PartyRole.LEADER, leader_comm)),
               threading.Thread(target=party, args=(PartyRole.FOLLOWER, follower_comm))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads), "a party hangs"
    return outcome


def test_a_fresh_run_trains_and_both_report_the_same_accuracy(tmp_path: Path) -> None:
    # Execute
    out = run_pair(_plan(tmp_path), tmp_path)
    # Assert
    assert not out.errors, out.errors
    leader, follower = out.results[PartyRole.LEADER], out.results[PartyRole.FOLLOWER]
    assert leader.test_accuracy == follower.test_accuracy > 0.85
    assert leader.steps == follower.steps and leader.resumed_from == 0
    assert out.lines[PartyRole.LEADER][0] == "starting from scratch (no common checkpoint)"
    assert [line.split(":")[0] for line in out.lines[PartyRole.LEADER][1:]] == \
        ["epoch 1/2", "epoch 2/2"]
    assert [line.split(":")[0] for line in out.lines[PartyRole.FOLLOWER][1:]] == \
        ["epoch 1", "epoch 2"]
    leader_store = CheckpointStore(tmp_path / "shop", keep=3)
    follower_store = CheckpointStore(tmp_path / "bank", keep=3)
    assert leader_store.valid_versions() == follower_store.valid_versions() != []
    assert all(v % 5 == 0 for v in leader_store.valid_versions())


def test_resume_from_the_newest_common_checkpoint_gives_the_same_model(tmp_path: Path) -> None:
    # Prepare: the reference, uninterrupted run of 2 epochs
    reference = run_pair(_plan(tmp_path / "ref", epochs=2), tmp_path / "ref")
    # a first run of 1 epoch, then the follower loses its newest checkpoint (as after a crash
    # between the two parties' saves of the same step)
    first = run_pair(_plan(tmp_path, epochs=1), tmp_path)
    assert not first.errors
    follower_store = CheckpointStore(tmp_path / "bank", keep=3)
    versions = follower_store.valid_versions()
    follower_store.path(versions[-1]).unlink()
    common = versions[-2]
    # Execute: both restart (2 epochs in all)
    second = run_pair(_plan(tmp_path, epochs=2), tmp_path)
    # Assert
    assert not second.errors, second.errors
    for role in PartyRole:
        assert second.results[role].resumed_from == common
        assert second.lines[role][0].startswith(f"resuming from checkpoint {common} (epoch 0, "
                                                f"sample {common * 64})")
    assert second.results[PartyRole.LEADER].steps == reference.results[PartyRole.LEADER].steps
    np.testing.assert_array_equal(second.halves[PartyRole.LEADER].v,
                                  reference.halves[PartyRole.LEADER].v)
    np.testing.assert_array_equal(second.halves[PartyRole.FOLLOWER].w,
                                  reference.halves[PartyRole.FOLLOWER].w)
    assert second.results[PartyRole.LEADER].test_accuracy == \
        reference.results[PartyRole.LEADER].test_accuracy


def test_a_corrupt_newest_checkpoint_is_skipped(tmp_path: Path) -> None:
    run_pair(_plan(tmp_path, epochs=1), tmp_path)
    store = CheckpointStore(tmp_path / "shop", keep=3)
    versions = store.valid_versions()
    store.path(versions[-1]).write_bytes(b"garbage")
    second = run_pair(_plan(tmp_path, epochs=1), tmp_path)
    assert not second.errors
    assert second.results[PartyRole.FOLLOWER].resumed_from == versions[-2]


def test_mismatched_samples_fail_at_both_parties(tmp_path: Path) -> None:
    # Prepare: the follower holds the same samples in another order
    plan = _plan(tmp_path)
    own = load_party_data(plan, PartyRole.FOLLOWER)
    swapped = dataclasses.replace(own.train, ids=own.train.ids[::-1].copy(),
                                  x=own.train.x[::-1].copy())
    assert isinstance(swapped, Split)
    data = {PartyRole.FOLLOWER: PartyData(train=swapped, test=own.test)}
    # Execute
    out = run_pair(plan, tmp_path, data=data)
    # Assert
    for role, peer in ((PartyRole.LEADER, "bank"), (PartyRole.FOLLOWER, "shop")):
        error = out.errors[role]
        assert isinstance(error, DataError), error
        assert f"training sample ids differ from {peer}'s" in error.message
    assert "sha256" in out.errors[PartyRole.LEADER].message


def test_a_stopped_follower_makes_the_leader_fail_at_once_naming_it(tmp_path: Path) -> None:
    # Prepare: the follower is asked to stop at its 7th step boundary
    calls = {"n": 0}

    class Stopped(Exception):
        pass

    def stop_later() -> None:
        calls["n"] += 1
        if calls["n"] == 7:
            raise Stopped("stopped by SIGTERM")

    # Execute
    out = run_pair(_plan(tmp_path), tmp_path, stop={PartyRole.FOLLOWER: stop_later})
    # Assert
    assert isinstance(out.errors[PartyRole.FOLLOWER], Stopped)
    error = out.errors[PartyRole.LEADER]
    assert isinstance(error, PeerGoneError), error
    assert "bank" in str(error) and "stopped by SIGTERM" in str(error)


@pytest.mark.parametrize("role", list(PartyRole))
def test_reader_state_outside_the_data_is_refused(tmp_path: Path, role: PartyRole) -> None:
    plan = _plan(tmp_path)
    training = PartyTraining(plan, role, None, load_party_data(plan, role),  # type: ignore[arg-type]
                             NumpyFollower(32, 16), CheckpointStore(tmp_path, keep=2))
    with pytest.raises(Exception, match="outside the"):
        training._batches(0, 10**6)


def test_a_non_finite_embedding_is_refused(tmp_path: Path) -> None:
    # Prepare: a follower whose embedding of the 3rd batch holds a NaN
    plan = _plan(tmp_path)
    calls = {"n": 0}

    class BadFollower(NumpyFollower):
        def forward(self, x: np.ndarray) -> np.ndarray:
            calls["n"] += 1
            out = super().forward(x)
            if calls["n"] == 3:
                out[0, 0] = np.nan
            return out

    def halves(role: PartyRole, features: int) -> Any:
        if role is PartyRole.LEADER:
            return NumpyLeader(features, plan.model.embedding_dim)
        return BadFollower(features, plan.model.embedding_dim)

    # Execute
    out = run_pair_with(plan, tmp_path, halves)
    # Assert
    error = out.errors[PartyRole.LEADER]
    assert "bank sent 'embedding' at step 2 with NaN or infinite values" in str(error)
    assert isinstance(out.errors[PartyRole.FOLLOWER], PeerGoneError)


def test_plans_that_differ_fail_at_both_but_the_epoch_count_may(tmp_path: Path) -> None:
    # Prepare: the follower's plan has another learning rate
    plan = _plan(tmp_path / "a")
    other = dataclasses.replace(plan, model=dataclasses.replace(plan.model, learning_rate=0.5))
    # Execute
    out = run_pair_with(plan, tmp_path / "a", _numpy_halves(plan), follower_plan=other)
    # Assert
    for role in PartyRole:
        assert isinstance(out.errors[role], PlanMismatchError), out.errors
        assert "plan settings (model, checkpoint steps) differ" in str(out.errors[role])
    # only the leader counts epochs: a follower plan with another count trains along
    longer = dataclasses.replace(plan, model=dataclasses.replace(plan.model, epochs=99))
    fine = run_pair_with(plan, tmp_path / "b", _numpy_halves(plan), follower_plan=longer)
    assert not fine.errors, fine.errors
