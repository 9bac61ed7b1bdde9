"""The director's logic with a fake launcher: queueing, offers, owners, failures, restarts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openfl_like.core.errors import NotFoundError, PermissionDeniedError, RefusedError
from openfl_like.core.experiments import (
    BroadcastKind,
    EventKind,
    ExperimentEvent,
    ExperimentKind,
    ExperimentState,
    Submission,
)
from openfl_like.core.ids import Role
from openfl_like.core.waiting import Wakeup
from openfl_like.director.director import REJECTED_CODE, Director
from openfl_like.plan.load import load_plan
from tests.unit.director.conftest import (
    CONTRACT_DICT,
    FakeClock,
    FakeLauncher,
    make_config,
    package,
    plan_doc,
    shard,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def director(tmp_path: Path, fake_launcher: FakeLauncher, clock: FakeClock
             ) -> Iterator[Director]:
    d = Director(make_config(tmp_path / "ws", max_running_experiments=1),
                 pki_dir=tmp_path / "pki", launcher_factory=lambda: fake_launcher, clock=clock)
    d.update_shard_info("site_a", shard())
    d.update_shard_info("site_b", shard())
    d.start()
    yield d
    d.stop(grace=1.0)


def submit(director: Director, name: str, owner: str = "alice", doc: Any = None,
           kind: ExperimentKind = ExperimentKind.TRAIN) -> str:
    return director.set_new_experiment(owner, Submission(name, kind, 100),
                                       package(doc or plan_doc()))


def wait_state(director: Director, name: str, state: ExperimentState,
               timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while director.registry.experiment(name).state is not state:
        assert time.monotonic() < end, director.registry.experiment(name)
        time.sleep(0.005)


def test_queued_experiments_start_in_submission_order(director: Director,
                                                      fake_launcher: FakeLauncher) -> None:
    # Prepare / Execute: three submissions, one slot
    for name in ("exp1", "exp2", "exp3"):
        assert submit(director, name) == name
    first = fake_launcher.wait_for(1)[0]
    assert first.spec.experiment == "exp1"
    assert director.registry.experiment("exp2").state is ExperimentState.QUEUED
    director.cancel_experiment("alice", "exp2", "not needed")
    first.callbacks.on_event({"type": "listening", "port": first.spec.port})
    assert director.registry.experiment("exp1").state is ExperimentState.RUNNING
    first.finish({"valid_accuracy": 0.5})
    # Assert: exp2 was cancelled while queued, so exp3 is next
    second = fake_launcher.wait_for(2)[1]
    assert second.spec.experiment == "exp3"
    assert director.registry.experiment("exp1").state is ExperimentState.FINISHED
    assert director.registry.experiment("exp1").final_metrics == {"valid_accuracy": 0.5}
    assert director.registry.experiment("exp2").state is ExperimentState.CANCELLED
    assert len(fake_launcher.launched) == 2


def test_experiment_plan_folder_and_package_for_chosen_envoys(director: Director,
                                                              fake_launcher: FakeLauncher
                                                              ) -> None:
    submit(director, "exp1")
    handle = fake_launcher.wait_for(1)[0]
    plan = load_plan(handle.spec.plan_dir)
    assert plan.collaborators == ("site_a", "site_b")
    assert plan.aggregator.name == "director" and plan.aggregator.port == handle.spec.port
    assert 61000 <= handle.spec.port <= 61009
    assert plan.workspace_dir == handle.spec.workspace
    record = director.registry.experiment("exp1")
    assert record.federation_uuid == plan.federation_uuid and record.port == handle.spec.port
    files = director.get_experiment_data("site_a", "exp1")
    assert [f.path for f in files] == ["plan.yaml", "cols.yaml", "data.yaml"]
    director.update_shard_info("site_x", shard({**CONTRACT_DICT, "features": [9]}))
    with pytest.raises(PermissionDeniedError):
        director.get_experiment_data("site_x", "exp1")


def test_owner_isolation(director: Director) -> None:
    submit(director, "exp1", owner="alice")
    with pytest.raises(PermissionDeniedError, match="belongs to another experimenter"):
        director.experiment_status("bob", "exp1")
    with pytest.raises(PermissionDeniedError):
        director.cancel_experiment("bob", "exp1", "")
    with pytest.raises(PermissionDeniedError):
        director.metric_stream("bob", "exp1", 1, wakeup=Wakeup())
    with pytest.raises(NotFoundError):
        director.experiment_status("alice", "nope")
    assert director.list_experiments("bob") == {"experiments": []}
    assert [e["name"] for e in director.list_experiments("alice")["experiments"]] == ["exp1"]
    with pytest.raises(RefusedError, match="already exists"):
        submit(director, "exp1", owner="bob")
    assert {e["name"] for e in director.envoys("bob")["envoys"]} == {"site_a", "site_b"}


def test_allow_lists(tmp_path: Path, fake_launcher: FakeLauncher) -> None:
    d = Director(make_config(tmp_path, envoys=("site_a",)), pki_dir=tmp_path,
                 launcher_factory=lambda: fake_launcher)
    try:
        assert d.is_authorized("site_a", Role.ENVOY) and not d.is_authorized("x", Role.ENVOY)
        assert d.is_authorized("anyone", Role.EXPERIMENTER)
        assert not d.is_authorized("site_a", Role.COLLABORATOR)
    finally:
        d.registry.close()


def test_no_matching_envoy_is_refused_with_the_difference(director: Director) -> None:
    doc = plan_doc(data_contract={"features": [4], "label": "classes", "classes": ["x", "y"]})
    with pytest.raises(RefusedError, match="site_a: classes differ: plan"):
        submit(director, "exp1", doc=doc)
    with pytest.raises(NotFoundError):
        director.registry.experiment("exp1")


def test_parked_envoy_is_offered_a_new_experiment_at_once(director: Director,
                                                          clock: FakeClock) -> None:
    # Prepare: site_a parks on WaitExperiment
    replies: list[Any] = []
    thread = threading.Thread(target=lambda: replies.append(
        director.wait_experiment("site_a", 10.0, wakeup=Wakeup())))
    thread.start()
    # Execute
    started = time.monotonic()
    submit(director, "exp1")
    thread.join(5)
    # Assert: told well under a second, once per two heartbeat periods
    assert time.monotonic() - started < 1.0
    assert replies[0].experiment == "exp1"
    assert director.wait_experiment("site_a", 0, wakeup=Wakeup()).experiment == ""
    clock.now += 11  # two heartbeat periods later, still not running there: offered again
    director.update_envoy_status("site_a", [], [])
    assert director.wait_experiment("site_a", 0, wakeup=Wakeup()).experiment == "exp1"
    director.update_envoy_status("site_a", ["exp1"], [])
    clock.now += 11
    director.update_envoy_status("site_a", ["exp1"], [])
    assert director.wait_experiment("site_a", 0, wakeup=Wakeup()).experiment == ""
    status = director.experiment_status("alice", "exp1")
    assert status["envoys"]["site_a"]["state"] == "running"
    assert status["envoys"]["site_b"]["online"] is False  # silent for 22 s


def test_awaiting_approval_shows_in_the_status(director: Director,
                                              fake_launcher: FakeLauncher) -> None:
    submit(director, "exp1")
    fake_launcher.wait_for(1)
    director.update_envoy_status("site_b", [], ["exp1"])
    status = director.experiment_status("alice", "exp1")
    assert status["state"] == "awaiting_approval" and status["awaiting_approval"] == ["site_b"]


def test_broadcast_ttl(director: Director, clock: FakeClock) -> None:
    director.broadcast(BroadcastKind.NOTICE, "maintenance at noon")
    reply = director.wait_experiment("site_a", 0, wakeup=Wakeup())
    assert [m.text for m in reply.messages] == ["maintenance at noon"]
    assert director.wait_experiment("site_a", 0, wakeup=Wakeup()).messages == ()  # once
    clock.now += 61  # past the 60 s TTL: dropped, never delivered late
    assert director.wait_experiment("site_b", 0, wakeup=Wakeup()).messages == ()


def test_envoy_failure_below_quorum_fails_the_experiment(director: Director,
                                                         fake_launcher: FakeLauncher) -> None:
    submit(director, "exp1", doc=plan_doc(stragglers={"min_collaborators": 2}))
    handle = fake_launcher.wait_for(1)[0]
    director.set_experiment_failed("site_b", "exp1", REJECTED_CODE, "not on my data",
                                   ["operator said no"])
    wait_state(director, "exp1", ExperimentState.FAILED)
    assert handle.stopped.wait(5)
    status = director.experiment_status("alice", "exp1")
    assert "site_b rejected: not on my data" in status["reason"]
    assert status["envoys"]["site_b"]["state"] == "rejected"
    assert status["envoys"]["site_b"]["last_log_lines"] == ["operator said no"]
    with pytest.raises(PermissionDeniedError):
        director.set_experiment_failed("site_x", "exp1", 1, "who am I", [])


def test_metrics_stream_and_feedback(director: Director, fake_launcher: FakeLauncher) -> None:
    submit(director, "exp1")
    handle = fake_launcher.wait_for(1)[0]
    handle.callbacks.on_line("aggregator listening on 127.0.0.1:61000")
    handle.callbacks.on_event({"type": "round", "round": 0, "metrics": {
        "train": {"loss": 0.7}}, "per_collaborator": {"site_a": {"train": {"loss": 0.7}}}})
    from openfl_like.core.experiments import FeedbackItem
    director.update_envoy_status("site_a", ["exp1"], [])  # its collaborator runs
    assert director.experiment_feedback("site_a", "exp1", [
        FeedbackItem(seq=1, time=1.0, kind=EventKind.LOG, text="epoch 1")]) == 1
    handle.finish({"valid_accuracy": 0.9})
    wait_state(director, "exp1", ExperimentState.FINISHED)
    # Ended, but site_a still runs it: its last lines may trail, so a follower waits for them
    # (up to the grace) and gets them, and ends as soon as site_a reports its part over.
    events: list[ExperimentEvent] = []
    follower = threading.Thread(target=lambda: events.extend(
        director.metric_stream("alice", "exp1", 1, wakeup=Wakeup())))
    started = time.monotonic()
    follower.start()
    assert director.experiment_feedback("site_a", "exp1", [
        FeedbackItem(seq=2, time=2.0, kind=EventKind.LOG, text="last line")]) == 2
    director.update_envoy_status("site_a", [], [])
    follower.join(10)
    assert not follower.is_alive() and time.monotonic() - started < 5
    assert events[-1].text == "last line"
    kinds = [(e.kind, e.source, e.task) for e in events]
    assert (EventKind.METRICS, "aggregator", "train") in kinds
    assert (EventKind.LOG, "site_a", "") in kinds
    assert events[-2].kind is EventKind.STATUS and events[-2].text == "finished"
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    status = director.experiment_status("alice", "exp1")
    assert status["round"] == 0 and status["last_metrics"] == {"train": {"loss": 0.7}}
    with pytest.raises(NotFoundError, match="no best model yet"):
        director.trained_model("alice", "exp1", "best")
    assert director.remove_experiment("alice", "exp1")["state"] == "removed"
    assert not director.runner.paths("exp1").root.exists()


def test_restart_relaunches_a_running_experiment_on_the_same_port(tmp_path: Path) -> None:
    # Prepare: a director whose experiment runs, then stops (as on SIGTERM)
    first_launcher = FakeLauncher()
    config = make_config(tmp_path / "ws")
    first = Director(config, pki_dir=tmp_path, launcher_factory=lambda: first_launcher)
    first.update_shard_info("site_a", shard())
    first.start()
    submit(first, "exp1")
    handle = first_launcher.wait_for(1)[0]
    handle.callbacks.on_event({"type": "listening", "port": handle.spec.port})
    first.stop(grace=1.0)
    # Execute: a new director on the same workspace
    second_launcher = FakeLauncher()
    second = Director(config, pki_dir=tmp_path, launcher_factory=lambda: second_launcher)
    second.start()
    try:
        again = second_launcher.wait_for(1)[0]
        # Assert
        assert again.spec == handle.spec
        assert second.registry.experiment("exp1").state is ExperimentState.RUNNING
    finally:
        second.stop(grace=1.0)


def test_restart_records_an_experiment_that_finished_while_the_director_was_down(
        tmp_path: Path) -> None:
    # Prepare: the director dies after its aggregator exported but before it heard the exit
    first_launcher = FakeLauncher()
    config = make_config(tmp_path / "ws")
    first = Director(config, pki_dir=tmp_path, launcher_factory=lambda: first_launcher)
    first.update_shard_info("site_a", shard())
    first.start()
    submit(first, "exp1")
    handle = first_launcher.wait_for(1)[0]
    handle.callbacks.on_event({"type": "listening", "port": handle.spec.port})
    first.stop(grace=1.0)
    outputs = first.runner.paths("exp1").output_dir
    outputs.mkdir(parents=True, exist_ok=True)
    (outputs / "final_metrics.json").write_text('{"rounds": 1, "test_accuracy": 0.9}')
    # Execute
    second_launcher = FakeLauncher()
    second = Director(config, pki_dir=tmp_path, launcher_factory=lambda: second_launcher)
    second.start()
    try:
        wait_state(second, "exp1", ExperimentState.FINISHED)
        # Assert: not relaunched (a finished federation refuses to start again), and reported
        assert second_launcher.launched == []
        assert second.experiment_status("alice", "exp1")["final_metrics"] == {
            "rounds": 1, "test_accuracy": 0.9}
    finally:
        second.stop(grace=1.0)


def test_validate_experiment_plan_has_no_training_round(director: Director,
                                                         fake_launcher: FakeLauncher) -> None:
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, w=np.zeros((4, 2), np.float32))
    director.set_new_experiment("alice", Submission("val1", ExperimentKind.VALIDATE, 100),
                                package(plan_doc(), model_npz=buffer.getvalue()))
    handle = fake_launcher.wait_for(1)[0]
    assert load_plan(handle.spec.plan_dir).aggregator.rounds_to_train == 0
    assert (handle.spec.plan_dir / "model.npz").is_file()
    handle.callbacks.on_event({"type": "round", "round": 0, "metrics": {
        "aggregated_model_validation": {"accuracy": 0.6}}, "per_collaborator": {
        "site_a": {"aggregated_model_validation": {"accuracy": 0.5, "data_size": 10.0}},
        "site_b": {"aggregated_model_validation": {"accuracy": 0.7, "data_size": 10.0}}}})
    status = director.experiment_status("alice", "val1")
    assert status["rounds_total"] == 0
    assert status["validation"]["weighted"] == {"accuracy": 0.6}
    assert status["validation"]["per_envoy"]["site_b"]["accuracy"] == 0.7
    assert director.describe_experiment("alice", "val1")["plan"]["model_file"] == "model.npz"
