"""The envoy agent against an in-memory director and a fake collaborator script."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from openfl_like.core.errors import DataError
from openfl_like.core.experiments import BroadcastKind, EventKind
from openfl_like.director.envoy import Envoy
from openfl_like.director.envoy_approvals import send_operator_command
from openfl_like.plan.contract import contract_to_dict
from tests.unit.director.envoy_fakes import FakeDirector, site_config
from tests.unit.director.envoy_fixtures import EnvoyFactory, alive


def test_registration_sends_the_contract_and_sample_counts(tmp_path: Path,
                                                           make_envoy: EnvoyFactory) -> None:
    # Prepare
    config = site_config(tmp_path)
    running = make_envoy(config)
    # Execute
    running.start()
    running.director.wait_for(lambda: running.director.shards and running.director.statuses,
                              what="registration and a heartbeat")
    # Assert
    shard = running.director.shards[0]
    assert shard.contract == contract_to_dict(config.contract)
    assert shard.contract["features"] == [4] and shard.contract["classes"] == ["a", "b"]
    assert dict(shard.sample_counts) == {"train": 30, "valid": 6}
    assert shard.description == "test site site1"
    assert running.director.last_status() == ([], [])
    running.stop()
    assert not running.errors


def test_data_that_does_not_fit_the_contract_refuses_to_start(tmp_path: Path) -> None:
    config = site_config(tmp_path, features=5, contract_features=4)
    director = FakeDirector()
    envoy = Envoy("site1", config, director, pki_dir=tmp_path / "pki")
    with pytest.raises(DataError, match=r"does not fit the contract.*site\.npz.*\(n, 4\)"):
        envoy.run(threading.Event())
    assert director.shards == []  # nothing registered
    assert not config.socket_path.exists()


def test_an_offered_experiment_runs_and_its_feedback_arrives_in_order(
        tmp_path: Path, make_envoy: EnvoyFactory) -> None:
    # Prepare
    running = make_envoy(site_config(tmp_path)).start()
    director = running.director
    # Execute
    director.offer("exp1")
    director.wait_for(lambda: "done" in director.log_lines("exp1"), what="the last log line")
    director.wait_for(lambda: len([i for i in director.items("exp1")
                                   if i.kind is EventKind.METRICS]) == 2, what="two metrics")
    director.wait_for(lambda: director.last_status() == ([], []) and any(
        "exp1" in s[0] for s in director.statuses), what="running, then ended")
    # Assert
    items = director.items("exp1")
    assert [i.seq for i in items] == list(range(1, len(items) + 1))  # from 1, no gaps
    assert director.log_lines("exp1") == ["starting", "round 0", "round 1", "done"]
    metrics = [i for i in items if i.kind is EventKind.METRICS]
    assert [(m.round_number, m.task) for m in metrics] == [(0, "train"), (1, "train")]
    assert metrics[0].scalars["loss"] == 1.0 and metrics[1].scalars["loss"] == 0.5
    assert metrics[0].scalars["samples"] == 10
    assert director.failures == []
    plan = running.config.experiment_dir("exp1") / "plan"
    assert (plan / "mode.txt").read_text().strip() == "ok"
    running.stop()


def test_a_failing_collaborator_is_reported_with_its_last_lines(
        tmp_path: Path, make_envoy: EnvoyFactory) -> None:
    director = FakeDirector(modes={"exp2": "fail"})
    running = make_envoy(site_config(tmp_path), director).start()
    director.offer("exp2")
    director.wait_for(lambda: director.failures, what="a failure report")
    failure = director.failures[0]
    assert failure.experiment == "exp2" and failure.code == 3
    assert failure.description == "fx: error: something broke"
    assert "round 1" in failure.lines and failure.lines[-1] == "fx: error: something broke"
    assert len(failure.lines) <= 20
    running.stop()


def test_a_cancel_broadcast_stops_the_collaborator(tmp_path: Path,
                                                    make_envoy: EnvoyFactory) -> None:
    director = FakeDirector(modes={"exp3": "hold"})
    running = make_envoy(site_config(tmp_path), director).start()
    director.offer("exp3")
    director.wait_for(lambda: "holding" in director.log_lines("exp3"), what="the run holding")
    pid = running.pid_of("exp3")
    assert pid is not None and alive(pid)
    # Execute
    director.broadcast(BroadcastKind.CANCEL, "exp3", "cancelled by the experimenter")
    # Assert: SIGTERM reached it (it says so), it ended, and no failure was reported
    director.wait_for(lambda: "stopping on SIGTERM" in director.log_lines("exp3"),
                      what="the graceful stop")
    director.wait_for(lambda: director.last_status() == ([], []), what="nothing running")
    assert not alive(pid)
    assert director.failures == []
    assert running.thread is not None and running.thread.is_alive()  # the envoy carries on
    running.stop()


def test_a_shutdown_broadcast_keeps_the_envoy_running(tmp_path: Path,
                                                      make_envoy: EnvoyFactory) -> None:
    running = make_envoy(site_config(tmp_path)).start()
    director = running.director
    director.wait_for(lambda: director.shards, what="registration")
    director.broadcast(BroadcastKind.SHUTDOWN, text="maintenance")
    director.offer("exp4")  # still served after the broadcast
    director.wait_for(lambda: "done" in director.log_lines("exp4"), what="exp4 to run")
    assert running.thread is not None and running.thread.is_alive()
    running.stop()


def test_a_reoffer_of_a_running_experiment_is_ignored(tmp_path: Path,
                                                       make_envoy: EnvoyFactory) -> None:
    director = FakeDirector(modes={"exp5": "hold"})
    running = make_envoy(site_config(tmp_path), director).start()
    director.offer("exp5")
    director.wait_for(lambda: "holding" in director.log_lines("exp5"), what="the run holding")
    pid = running.pid_of("exp5")
    # Execute: offered again while it runs
    director.offer("exp5")
    director.wait_for(lambda: not director.offers, what="the re-offer to be taken")
    director.offer("other")  # a later offer proves the re-offer was handled (in order)
    director.wait_for(lambda: "other" in director.downloads, what="the next offer")
    # Assert
    assert director.downloads.count("exp5") == 1
    assert running.pid_of("exp5") == pid and pid is not None and alive(pid)
    assert director.log_lines("exp5").count("starting") == 1
    running.stop()


def test_stop_terminates_every_child(tmp_path: Path, make_envoy: EnvoyFactory) -> None:
    # Prepare: one that stops on SIGTERM, one that ignores it (killed after the grace)
    director = FakeDirector(modes={"a": "hold", "b": "stubborn"})
    running = make_envoy(site_config(tmp_path), director, grace_seconds=0.5).start()
    director.offer("a")
    director.offer("b")
    director.wait_for(lambda: "holding" in director.log_lines("a")
                      and "holding" in director.log_lines("b"), what="both runs holding")
    director.wait_for(lambda: sorted(director.last_status()[0]) == ["a", "b"],
                      what="both reported running")
    pids = [running.pid_of("a"), running.pid_of("b")]
    assert all(p is not None and alive(p) for p in pids)
    # Execute
    running.envoy.stop(timeout=20)
    # Assert: stop() returned with no child left, and run() has returned too
    assert not any(alive(p) for p in pids if p is not None)
    assert running.thread is not None
    running.thread.join(5)
    assert not running.thread.is_alive() and not running.errors
    assert director.failures == []  # stopping the envoy is not an experiment failure
    assert "stopping on SIGTERM" in director.log_lines("a")  # its last line was still sent
    assert not running.config.socket_path.exists()


def test_review_holds_the_run_until_approved_over_the_socket(
        tmp_path: Path, make_envoy: EnvoyFactory) -> None:
    running = make_envoy(site_config(tmp_path, review=True)).start()
    director = running.director
    director.offer("exp6")
    director.wait_for(lambda: director.last_status() == ([], ["exp6"]),
                      what="exp6 reported awaiting approval")
    assert running.pid_of("exp6") is None and director.items("exp6") == []
    status = send_operator_command(running.config.socket_path, {"status": True})
    assert status["awaiting_approval"] == ["exp6"] and status["registered"] is True
    assert running.config.socket_path.stat().st_mode & 0o777 == 0o600
    # Execute
    reply = send_operator_command(running.config.socket_path, {"approve": "exp6"})
    # Assert
    assert reply == {"ok": True, "experiment": "exp6", "decision": "approved"}
    director.wait_for(lambda: "done" in director.log_lines("exp6"), what="the approved run")
    assert director.failures == []
    running.stop()


def test_offer_larger_than_allowed_is_refused_with_a_reason(tmp_path: Path,
                                                            make_envoy: EnvoyFactory) -> None:
    class TooLarge(FakeDirector):
        def get_experiment_data(self, experiment: str, dest: Path, *, max_bytes: int
                                ) -> list[Path]:
            from openfl_like.core.errors import ResourceLimitError
            raise ResourceLimitError(f"package larger than {max_bytes} bytes")

    director = TooLarge()
    running = make_envoy(site_config(tmp_path), director).start()
    director.offer("big")
    director.wait_for(lambda: director.failures, what="the refusal")
    assert director.failures[0].code == 1002
    assert "larger than 1048576 bytes" in director.failures[0].description
    running.stop()
