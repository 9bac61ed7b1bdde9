"""The inbox: duplicates, conflicts, bounds, stale steps, control de-duplication, goodbye."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest

from openfl_like.core.errors import (
    PlanMismatchError,
    RefusedError,
    ResourceExhaustedError,
    ResourceLimitError,
)
from openfl_like.core.vertical import (
    Control,
    ControlKind,
    Hello,
    PartyRole,
    PeerGoneError,
    StepTensor,
)
from openfl_like.vertical.inbox import Inbox, control_key

from .conftest import make_pair, start_both


def _inbox(**kwargs) -> Inbox:
    options = dict(me="bank", peer="shop", my_role=PartyRole.FOLLOWER, session_id="s")
    options.update(kwargs)
    return Inbox(**options)


def _no_wait(fail):  # a take that would have to wait is a test failure
    raise AssertionError("take had to wait")


def _t(name: str, step: int, *values: float) -> StepTensor:
    return StepTensor(name, step, np.array(values, dtype=np.float32))


def test_identical_resend_is_taken_once_and_a_conflicting_one_refused() -> None:
    inbox = _inbox()
    inbox.on_tensor(_t("x", 0, 1, 2))
    inbox.on_tensor(_t("x", 0, 1, 2))  # re-send after a lost reply
    with pytest.raises(RefusedError, match="tensor 'x' of step 0 was already sent with other"):
        inbox.on_tensor(_t("x", 0, 9, 9))
    np.testing.assert_array_equal(inbox.take_tensor("x", 0, _no_wait, "recv"), [1, 2])
    inbox.on_tensor(_t("x", 0, 1, 2))  # a late re-send of what was consumed: accepted, dropped
    assert inbox.held_bytes == 0
    with pytest.raises(RefusedError):
        inbox.on_tensor(_t("x", 0, 3, 3))


def test_a_consumed_read_only_tensor_is_kept_to_recognise_its_resend() -> None:
    inbox = _inbox()
    received = np.frombuffer(np.array([1, 2], np.float32).tobytes(), np.float32)  # as PutTensor
    inbox.on_tensor(StepTensor("x", 0, received))
    inbox.take_tensor("x", 0, _no_wait, "recv")
    inbox.on_tensor(_t("x", 0, 1, 2))  # the same contents: a re-send, dropped
    with pytest.raises(RefusedError, match="tensor 'x' of step 0 was already sent with other"):
        inbox.on_tensor(_t("x", 0, 1, 3))
    inbox.set_step(1)  # forgets step 0, and the bytes kept for it
    assert inbox._kept_bytes == 0


def test_each_waiter_is_handed_its_own_tensor() -> None:
    inbox = _inbox()
    got: dict[str, np.ndarray] = {}
    registered: list[str] = []

    def wait(name: str) -> None:
        def register(fail):
            registered.append(name)
            return lambda: None
        got[name] = inbox.take_tensor(name, 0, register, f"recv {name!r}")

    threads = [threading.Thread(target=wait, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    while len(registered) < 2:
        time.sleep(0.001)
    inbox.on_tensor(_t("b", 0, 2))
    threads[1].join(2)
    assert not threads[1].is_alive() and threads[0].is_alive()  # "a" still waits
    inbox.on_tensor(_t("a", 0, 1))
    threads[0].join(2)
    assert got["a"].tolist() == [1] and got["b"].tolist() == [2] and inbox.held_bytes == 0


def test_bounded_by_bytes_and_entries() -> None:
    inbox = _inbox(max_bytes=16, max_entries=3)
    inbox.on_tensor(_t("a", 0, 1, 2, 3))  # 12 bytes
    with pytest.raises(ResourceExhaustedError, match=r"inbox is full: 12 bytes waiting \+ 8 > 16"):
        inbox.on_tensor(_t("b", 0, 1, 2))
    with pytest.raises(ResourceLimitError, match="more than bank's whole inbox"):
        inbox.on_tensor(_t("huge", 0, *range(5)))
    inbox.take_tensor("a", 0, _no_wait, "recv")
    inbox.on_tensor(_t("b", 0, 1, 2))
    inbox.on_tensor(_t("c", 0))
    inbox.on_control(Control(1, ControlKind.CHECKPOINT_VERSION, version=1))
    with pytest.raises(ResourceExhaustedError, match="holds 3 messages"):
        inbox.on_tensor(_t("d", 0))


def test_tensors_of_passed_steps_are_dropped_with_a_warning(caplog) -> None:
    inbox = _inbox(step=5)
    with caplog.at_level(logging.WARNING):
        inbox.on_tensor(_t("old", 3, 1))
        inbox.on_tensor(_t("held", 5, 1))
        inbox.on_tensor(_t("next", 6, 1))
        inbox.set_step(6)
    assert "dropped tensor 'old' of step 3 from shop: this party is at step 5" in caplog.text
    assert "dropped tensor 'held' of step 5" in caplog.text
    assert inbox.held_bytes == 4  # only 'next' is left
    inbox.take_tensor("next", 6, _no_wait, "recv")


def test_control_messages_dedup_by_seq_in_fifo_order() -> None:
    inbox = _inbox()
    for seq, name in ((1, "a"), (2, "b"), (1, "a"), (3, "c"), (2, "b")):
        inbox.on_control(Control(seq, ControlKind.READER_STATE, name="r", block_id=ord(name)))
    key = control_key(ControlKind.READER_STATE, "r")
    got = [inbox.take_control(key, _no_wait, "recv").block_id for _ in range(3)]
    assert got == [ord("a"), ord("b"), ord("c")]
    with pytest.raises(AssertionError, match="had to wait"):
        inbox.take_control(key, _no_wait, "recv")


def test_goodbye_fails_waiters_but_delivers_what_arrived() -> None:
    inbox = _inbox()
    inbox.on_tensor(_t("here", 0, 1))
    failures: list[BaseException] = []
    registered = threading.Event()

    def register(fail):
        registered.set()
        return lambda: None

    def wait() -> None:
        try:
            inbox.take_tensor("missing", 0, register, "recv 'missing' at step 0")
        except PeerGoneError as error:
            failures.append(error)

    thread = threading.Thread(target=wait)
    thread.start()
    assert registered.wait(2)
    inbox.on_control(Control(1, ControlKind.GOODBYE, reason="bye now"))
    thread.join(2)
    assert str(failures[0]) == ("recv 'missing' at step 0 failed: peer shop said goodbye "
                                "(bye now)")
    inbox.take_tensor("here", 0, _no_wait, "recv")
    with pytest.raises(PeerGoneError):
        inbox.take_tensor("missing", 0, _no_wait, "recv")


def test_a_monitor_failure_wakes_the_waiter() -> None:
    inbox = _inbox()
    fails = []

    def register(fail):
        fails.append(fail)
        return lambda: None

    thread_errors: list[BaseException] = []

    def wait() -> None:
        try:
            inbox.take_tensor("x", 0, register, "recv")
        except RuntimeError as error:
            thread_errors.append(error)

    thread = threading.Thread(target=wait)
    thread.start()
    while not fails:
        time.sleep(0.001)
    fails[0](RuntimeError("timed out"))
    thread.join(2)
    assert [str(e) for e in thread_errors] == ["timed out"]


@pytest.mark.parametrize(("hello", "reason"), [
    (Hello("other", "shop", PartyRole.LEADER, "bank"), "session 'other' != ours 's'"),
    (Hello("s", "mallory", PartyRole.LEADER, "bank"), "peer is 'mallory', expected 'shop'"),
    (Hello("s", "shop", PartyRole.FOLLOWER, "bank"), "peer says it is the follower"),
    (Hello("s", "shop", PartyRole.LEADER, "bob"), "peer wants 'bob', but we are 'bank'"),
    (Hello("s", "shop", PartyRole.LEADER, "bank", protocol_version=99), "protocol version 99"),
])
def test_on_connect_refuses_what_disagrees(hello: Hello, reason: str) -> None:
    with pytest.raises(PlanMismatchError, match=reason):
        _inbox().on_connect(hello)


def test_a_reconnect_after_goodbye_is_a_restarted_peer() -> None:
    inbox = _inbox()
    hello = Hello("s", "shop", PartyRole.LEADER, "bank")
    inbox.on_connect(hello)
    inbox.on_control(Control(1, ControlKind.CHECKPOINT_VERSION, version=3))
    inbox.on_control(Control(2, ControlKind.GOODBYE, reason="restart"))
    assert inbox.peer_gone == "restart"
    inbox.on_connect(hello)  # the restarted leader numbers its messages from 1 again
    assert inbox.peer_gone is None
    inbox.on_control(Control(1, ControlKind.CHECKPOINT_VERSION, version=4))
    key = control_key(ControlKind.CHECKPOINT_VERSION)
    assert [inbox.take_control(key, _no_wait, "r").version for _ in range(2)] == [3, 4]


def test_communicator_send_waits_for_room_and_a_conflict_is_refused() -> None:
    leader, follower = make_pair(_max_inbox_bytes=1000)
    start_both(leader, follower)
    try:
        leader.send("a", np.zeros(100, dtype=np.float64))  # 800 bytes
        future = leader.send_async("b", np.ones(100, dtype=np.float64))
        time.sleep(0.1)
        assert not future.done()  # retried while the inbox is full
        follower.recv("a")
        future.result(timeout=2)
        np.testing.assert_array_equal(follower.recv("b"), np.ones(100))
        leader.send("c", np.zeros(1))
        with pytest.raises(RefusedError, match="'c' of step 0 was already sent"):
            leader.send("c", np.ones(1))
    finally:
        leader.shutdown()
        follower.shutdown()
