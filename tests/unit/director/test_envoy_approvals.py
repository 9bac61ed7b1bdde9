"""The operator's decisions: over the socket while the envoy runs, on disk while it is down."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openfl_like.app.envoy import approve_experiment, envoy_status, reject_experiment
from openfl_like.core.errors import ConfigError, NotFoundError
from openfl_like.director.envoy_approvals import (
    Decision,
    EnvoyNotRunningError,
    OperatorSocket,
    read_decision,
    send_operator_command,
)
from openfl_like.director.envoy_experiment import REJECTED
from tests.unit.director.envoy_fakes import FakeDirector, site_config
from tests.unit.director.envoy_fixtures import EnvoyFactory


def test_reject_over_the_socket_reports_the_reason(tmp_path: Path,
                                                   make_envoy: EnvoyFactory) -> None:
    config = site_config(tmp_path, review=True)
    running = make_envoy(config).start()
    director = running.director
    director.offer("exp1")
    director.wait_for(lambda: director.last_status() == ([], ["exp1"]), what="awaiting")
    # Execute
    reply = reject_experiment(config, "site1", "exp1", "not on my patients' data")
    # Assert
    assert reply["decision"] == "rejected" and reply["recorded"] is False
    director.wait_for(lambda: director.failures, what="the rejection")
    failure = director.failures[0]
    assert failure.experiment == "exp1" and failure.code == REJECTED
    assert failure.description == "rejected by the envoy's operator: not on my patients' data"
    director.wait_for(lambda: director.last_status() == ([], []), what="nothing awaiting")
    assert running.pid_of("exp1") is None  # never started
    record = read_decision(config.experiment_dir("exp1"))
    assert record is not None and record.decision is Decision.REJECTED and record.applied
    running.stop()


def test_unknown_experiment_is_a_clear_error_running_or_not(tmp_path: Path,
                                                            make_envoy: EnvoyFactory) -> None:
    config = site_config(tmp_path, review=True)
    with pytest.raises(NotFoundError, match="unknown experiment 'nope'"):
        approve_experiment(config, "site1", "nope")  # envoy down
    running = make_envoy(config).start()
    running.director.wait_for(lambda: running.director.statuses, what="a heartbeat")
    assert envoy_status(config, "site1")["envoy"] == "site1"  # the socket is up
    with pytest.raises(NotFoundError, match="nothing awaiting approval"):
        approve_experiment(config, "site1", "nope")  # envoy up
    with pytest.raises(ConfigError, match="unknown command"):
        send_operator_command(config.socket_path, {"launch": "x"})
    running.stop()
    with pytest.raises(EnvoyNotRunningError, match="envoy site1 is not running"):
        envoy_status(config, "site1")


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_a_decision_recorded_while_the_envoy_is_down_is_applied_at_start(
        tmp_path: Path, make_envoy: EnvoyFactory, decision: str) -> None:
    # Prepare: an experiment left awaiting approval by an envoy that then stopped
    config = site_config(tmp_path, review=True)
    first = make_envoy(config).start()
    first.director.offer("exp2")
    first.director.wait_for(lambda: first.director.last_status() == ([], ["exp2"]),
                            what="awaiting")
    first.stop()
    record = read_decision(config.experiment_dir("exp2"))
    assert record is not None and record.decision is Decision.PENDING
    # Execute: the operator decides while it is down, then it starts again
    if decision == "approve":
        reply = approve_experiment(config, "site1", "exp2")
    else:
        reply = reject_experiment(config, "site1", "exp2", "too many rounds")
    assert reply["recorded"] is True
    doc = json.loads((config.experiment_dir("exp2") / "decision.json").read_text())
    assert doc["decision"] == ("approved" if decision == "approve" else "rejected")
    director = FakeDirector()
    second = make_envoy(config, director).start()
    # Assert
    if decision == "approve":
        director.wait_for(lambda: "done" in director.log_lines("exp2"), what="the run")
        assert director.failures == []
    else:
        director.wait_for(lambda: director.failures, what="the rejection")
        assert director.failures[0].code == REJECTED
        assert director.failures[0].description.endswith("too many rounds")
        assert director.log_lines("exp2") == []
    def applied() -> bool:  # re-checked at each heartbeat
        record = read_decision(config.experiment_dir("exp2"))
        return record is not None and record.applied

    director.wait_for(applied, what="the decision marked applied")
    second.stop()


def test_a_pending_experiment_awaits_approval_again_after_a_restart(
        tmp_path: Path, make_envoy: EnvoyFactory) -> None:
    config = site_config(tmp_path, review=True)
    first = make_envoy(config).start()
    first.director.offer("exp3")
    first.director.wait_for(lambda: first.director.last_status() == ([], ["exp3"]),
                            what="awaiting")
    first.stop()
    second = make_envoy(config).start()
    second.director.wait_for(lambda: second.director.last_status() == ([], ["exp3"]),
                             what="awaiting again")
    assert approve_experiment(config, "site1", "exp3")["recorded"] is False
    second.director.wait_for(lambda: "done" in second.director.log_lines("exp3"),
                             what="the run")
    second.stop()


def test_a_second_envoy_on_the_same_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "envoy.sock"
    first = OperatorSocket(path, lambda request: {"ok": True}).start()
    try:
        with pytest.raises(ConfigError, match="another envoy already serves"):
            OperatorSocket(path, lambda request: {"ok": True}).start()
    finally:
        first.close()
    assert not path.exists()


def test_a_stale_socket_is_replaced_and_long_paths_work(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    path = deep / "envoy.sock"
    import socket

    stale = socket.socket(socket.AF_UNIX)
    stale.bind(f"/proc/self/fd/{__import__('os').open(deep, 0)}/envoy.sock")
    stale.close()  # a socket file nobody listens on
    assert path.exists()
    server = OperatorSocket(path, lambda request: {"ok": True, "echo": dict(request)}).start()
    try:
        assert send_operator_command(path, {"status": True}) == {
            "ok": True, "echo": {"status": True}}
    finally:
        server.close()
