"""Watchdog alarms and per-peer slots: each outcome next to its opposite."""

from __future__ import annotations

import threading

import pytest

from openfl_like.core.errors import ResourceExhaustedError
from openfl_like.transport.limits import PeerSlots
from openfl_like.transport.watchdog import Watchdog, expire_call

# -- watchdog ------------------------------------------------------------------------------------


def test_an_alarm_fires_when_not_disarmed_in_time() -> None:
    fired = threading.Event()
    alarm = Watchdog().arm(0.05, fired.set)
    assert fired.wait(5)
    assert alarm.fired and alarm.disarm() is False  # too late


def test_an_alarm_disarmed_in_time_never_fires() -> None:
    watchdog = Watchdog()
    fired = threading.Event()
    alarm = watchdog.arm(0.2, fired.set)
    assert alarm.disarm() is True and alarm.disarm() is True
    late = watchdog.arm(0.05, lambda: None)  # a later alarm still fires, the first one does not
    assert _wait_fired(late)
    assert not fired.is_set() and not alarm.fired


def test_alarms_fire_in_deadline_order_and_the_thread_ends_when_idle() -> None:
    watchdog = Watchdog()
    order: list[str] = []
    done = threading.Event()
    watchdog.arm(0.15, lambda: (order.append("late"), done.set()))
    watchdog.arm(0.05, lambda: order.append("early"))
    assert done.wait(5)
    assert order == ["early", "late"]
    for _ in range(500):  # the thread leaves once nothing is armed
        if not watchdog.running:
            break
        threading.Event().wait(0.01)
    assert not watchdog.running


def test_a_failing_callback_does_not_stop_the_others() -> None:
    watchdog = Watchdog()
    ok = threading.Event()
    watchdog.arm(0.01, lambda: 1 / 0)
    watchdog.arm(0.05, ok.set)
    assert ok.wait(5)


def _wait_fired(alarm, timeout: float = 5.0) -> bool:
    for _ in range(int(timeout / 0.01)):
        if alarm.fired:
            return True
        threading.Event().wait(0.01)
    return False


class _Call:
    def __init__(self, fail: bool) -> None:
        self.fail, self.cancelled_with = fail, None

    def cancel(self, code: int, details: str) -> None:
        if self.fail:
            raise TypeError("not this grpc")
        self.cancelled_with = (code, details)


class _Context:
    def __init__(self, fail: bool) -> None:
        self._rpc_event = type("E", (), {"call": _Call(fail)})()
        self.public_cancel = False

    def cancel(self) -> None:
        self.public_cancel = True


def test_expire_call_sends_deadline_exceeded_or_falls_back_to_cancel() -> None:
    good, odd = _Context(fail=False), _Context(fail=True)
    expire_call(good, "late")
    expire_call(odd, "late")
    assert good._rpc_event.call.cancelled_with == (4, "late") and not good.public_cancel
    assert odd.public_cancel


# -- per-peer slots ------------------------------------------------------------------------------


def test_slots_up_to_the_cap_then_refused_with_a_reason() -> None:
    slots = PeerSlots("tensor streams", 2)
    with slots.hold("fp-a", "col-a"), slots.hold("fp-a", "col-a"):
        with slots.hold("fp-b", "col-b"):  # another peer has its own slots
            assert slots.in_use("fp-b") == 1
        refused = pytest.raises(ResourceExhaustedError, match="col-a has 2 tensor streams open")
        with refused, slots.hold("fp-a", "col-a"):
            pass
        assert slots.in_use("fp-a") == 2
    assert slots.in_use() == 0


def test_slots_are_released_when_the_block_raises() -> None:
    slots = PeerSlots("long-polls", 1)
    with pytest.raises(KeyError), slots.hold("fp", "col"):
        raise KeyError("handler failed")
    with slots.hold("fp", "col"):
        assert slots.in_use("fp") == 1
    assert slots.in_use() == 0


def test_concurrent_holders_never_exceed_the_cap() -> None:
    slots = PeerSlots("streams", 3)
    inside, peak, refused = [0], [0], [0]
    lock, start = threading.Lock(), threading.Barrier(16)

    def run() -> None:
        start.wait()
        for _ in range(200):
            try:
                with slots.hold("fp", "col"):
                    with lock:
                        inside[0] += 1
                        peak[0] = max(peak[0], inside[0])
                    with lock:
                        inside[0] -= 1
            except ResourceExhaustedError:
                with lock:
                    refused[0] += 1

    threads = [threading.Thread(target=run) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak[0] <= 3 and slots.in_use() == 0


def test_a_cap_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        PeerSlots("streams", 0)
