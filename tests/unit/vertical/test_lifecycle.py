"""Connecting (either party first, refusals fatal at once), timeouts, goodbye and shutdown."""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import pytest

from openfl_like.core.errors import ConfigError, ConnectionFailedError, PlanMismatchError
from openfl_like.core.vertical import (
    CommunicatorClosedError,
    OperationTimeoutError,
    PeerGoneError,
)
from openfl_like.vertical import Communicator
from openfl_like.vertical.memory_link import memory_pair

from .conftest import make_pair, start_both


def _in_thread(fn) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


@pytest.mark.parametrize("first", ["leader", "follower"])
def test_either_party_may_start_first(first: str) -> None:
    leader, follower = make_pair()
    early, late = (leader, follower) if first == "leader" else (follower, leader)
    thread, errors = _in_thread(early.initialize)
    time.sleep(0.15)  # the early one retries: its peer's server is not up yet
    assert thread.is_alive()
    late.initialize()
    thread.join(5)
    assert not errors
    leader.send("x", np.ones(2))
    np.testing.assert_array_equal(follower.recv("x"), np.ones(2))
    leader.shutdown()
    follower.shutdown()


def test_connect_gives_up_after_connect_timeout() -> None:
    leader, _ = make_pair(connect_timeout_ms=200)
    started = time.monotonic()
    with pytest.raises(ConnectionFailedError, match=r"could not connect to peer bank at "
                                                    r"memory:bank within 0\.2 s"):
        leader.initialize()
    assert 0.2 <= time.monotonic() - started < 1.0
    with pytest.raises(CommunicatorClosedError, match="failed to initialize"):
        leader.initialize()


@pytest.mark.parametrize(("change", "reason"), [
    (dict(session_id="other"), r"session 'other' != ours 'test-session'"),
    (dict(role="leader"), r"peer says it is the leader, but we are the leader"),
])
def test_a_refusal_is_fatal_at_once(change: dict, reason: str) -> None:
    lead_end, follow_end = memory_pair()
    leader = Communicator.over_link("leader", lead_end, name="shop", peer_name="bank",
                                    session_id="test-session", connect_timeout_ms=3_000)
    follower = Communicator.over_link(
        change.get("role", "follower"), follow_end, name="bank", peer_name="shop",
        session_id=change.get("session_id", "test-session"), connect_timeout_ms=3_000)
    lead_end.drop = lambda kind, message: kind == "connect"  # the leader only listens here
    thread, errors = _in_thread(leader.initialize)
    deadline = time.monotonic() + 2
    while lead_end.handler is None and time.monotonic() < deadline:
        time.sleep(0.005)
    started = time.monotonic()
    with pytest.raises(PlanMismatchError, match=rf"^peer shop at memory:shop refused bank: "
                                                rf"shop refused 'bank': {reason}"):
        follower.initialize()
    assert time.monotonic() - started < 1.5  # at once, not after the 5 s timeout
    # The refusing side gives up at once too: the same disagreement holds both ways, and the
    # peer has already gone (it would otherwise retry until its own connect window closes).
    thread.join(1.5)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], PlanMismatchError), errors
    assert str(errors[0]).startswith(
        "shop refused the connection of peer bank at memory:bank: shop refused 'bank': "), errors
    assert re.search(reason, str(errors[0])), errors
    leader.shutdown("test over")


def test_shutdown_while_connecting_stops_everything_at_once() -> None:
    lead_end, _ = memory_pair()
    leader = Communicator.over_link("leader", lead_end, name="shop", peer_name="bank",
                                    connect_timeout_ms=10_000)
    thread, errors = _in_thread(leader.initialize)
    while lead_end.handler is None:
        time.sleep(0.005)
    started = time.monotonic()
    leader.shutdown("operator stop")
    thread.join(2)
    assert time.monotonic() - started < 1.5  # at once, not after the 5 s timeout
    assert lead_end.handler is None  # the server was stopped
    assert len(errors) == 1 and isinstance(errors[0], CommunicatorClosedError)
    assert "operator stop" in str(errors[0])


def test_recv_timeout_names_operation_name_step_and_peer(pair) -> None:
    _, follower = pair
    follower.set_step(12)
    started = time.monotonic()
    with pytest.raises(OperationTimeoutError) as caught:
        follower.recv("gradient", timeout_ms=200)
    took = time.monotonic() - started
    assert str(caught.value) == ("recv 'gradient' at step 12 timed out after 0.2 s "
                                 "(peer shop at memory:shop)")
    # scans every 20 ms: the monitor fails it soon after the deadline (slack for a busy CI host;
    # without the monitor it would wait forever)
    assert 0.2 <= took < 0.2 + 0.4


def test_a_recv_timeout_says_when_the_tensor_waits_for_another_step(pair) -> None:
    leader, follower = pair
    leader.set_step(3)
    leader.send("embedding", np.zeros(1))
    with pytest.raises(OperationTimeoutError, match=(
            r"^recv 'embedding' at step 0 timed out after 0\.1 s \(peer shop at memory:shop\); "
            r"'embedding' is here for step\(s\) 3: are both parties at the same step\?$")):
        follower.recv("embedding", timeout_ms=100)


def test_send_timeout_cancels_the_send() -> None:
    leader, follower = make_pair(drop=lambda kind, msg: getattr(msg, "name", "") == "lost")
    start_both(leader, follower)
    with pytest.raises(OperationTimeoutError,
                       match=r"^send 'lost' at step 0 timed out after 0\.2 s \(peer bank"):
        leader.send("lost", np.zeros(3), timeout_ms=200)
    leader.send("kept", np.zeros(3))  # the link still works
    assert follower.recv("kept").shape == (3,)
    leader.shutdown()
    follower.shutdown()


def test_goodbye_fails_a_waiting_recv_at_once(pair) -> None:
    leader, follower = pair
    leader.send("sent-before", np.arange(3))
    result: list[BaseException] = []
    thread, result = _in_thread(lambda: follower.recv("gradient", timeout_ms=5_000))
    time.sleep(0.05)
    started = time.monotonic()
    leader.shutdown("leader finished its epochs")
    thread.join(2)
    assert time.monotonic() - started < 1.5  # at once, not after the 5 s timeout
    assert len(result) == 1 and isinstance(result[0], PeerGoneError)
    assert "peer shop said goodbye (leader finished its epochs)" in str(result[0])
    assert "recv 'gradient' at step 0" in str(result[0])
    # what had arrived is still delivered; what had not fails at once
    np.testing.assert_array_equal(follower.recv("sent-before"), np.arange(3))
    with pytest.raises(PeerGoneError, match="shop"):
        follower.recv("never", timeout_ms=5_000)


def test_goodbye_fails_a_pending_send_and_later_sends_at_once() -> None:
    # the follower's inbox loses the 'stuck' tensor, so that send waits for its ack
    leader, follower = make_pair(drop=lambda kind, msg: getattr(msg, "name", "") == "stuck")
    start_both(leader, follower)
    future = leader.send_async("stuck", np.zeros(2), timeout_ms=5_000)
    time.sleep(0.05)
    started = time.monotonic()
    follower.shutdown("bank closes")
    with pytest.raises(PeerGoneError, match=r"^send 'stuck' at step 0 failed: peer bank said "
                                            r"goodbye \(bank closes\)$"):
        future.result(timeout=2)
    assert time.monotonic() - started < 1.5  # at once, not after the 5 s timeout
    with pytest.raises(PeerGoneError, match="send_ckpt_version at step 0 failed: peer bank"):
        leader.send_ckpt_version(1, timeout_ms=5_000)
    leader.shutdown()


def test_shutdown_fails_own_waiters_and_every_later_op(pair) -> None:
    _, follower = pair
    thread, result = _in_thread(lambda: follower.recv("x", timeout_ms=5_000))
    time.sleep(0.05)
    follower.shutdown("bank stops")
    thread.join(2)
    assert isinstance(result[0], CommunicatorClosedError)
    assert "bank stops" in str(result[0])
    for op in (lambda: follower.recv("x"), lambda: follower.send("x", np.zeros(1)),
               lambda: follower.send_async("x", np.zeros(1)), follower.add_step,
               lambda: follower.set_step(3), follower.recv_ckpt_version,
               lambda: follower.recv_reader_state("train"), follower.initialize):
        with pytest.raises(CommunicatorClosedError):
            op()
    follower.shutdown()  # idempotent
    assert follower.closed


def test_context_manager_initializes_and_shuts_down() -> None:
    leader, follower = make_pair()
    thread, errors = _in_thread(follower.initialize)
    with leader as comm:
        assert comm is leader and comm.local_port == 0
        comm.send("x", np.zeros(1))
        thread.join(5)  # the follower's own connect (to the leader's server) went through too
    assert not errors and leader.closed
    with pytest.raises(PeerGoneError):
        follower.recv("y")
    assert follower.recv("x").shape == (1,)
    follower.shutdown()


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown federal role 'boss'"):
        Communicator("boss", "h:1")
    with pytest.raises(ConfigError, match="scan_interval_ms must be a positive number"):
        Communicator("leader", "h:1", scan_interval_ms=0)
    with pytest.raises(ConfigError, match="same name"):
        Communicator("leader", "h:1", name="x", peer_name="x")
