"""SignalStop with real signals sent to this process: stop request, second signal, restore."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType

import pytest

from openfl_like.app.signals import SignalStop, StoppedBySignal
from openfl_like.core.errors import ConfigError, OpenflLikeError

pytestmark = pytest.mark.timeout(30)


def _previous_handler(signum: int, frame: FrameType | None) -> None:
    raise AssertionError(f"the previous handler ran for {signum}")


@pytest.fixture
def own_handlers() -> Iterator[None]:
    """Known handlers before each test (so restoring can be checked), the originals after."""
    sigs = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
    originals = {s: signal.getsignal(s) for s in sigs}
    for sig in sigs:
        signal.signal(sig, _previous_handler)
    try:
        yield
    finally:
        for sig, handler in originals.items():
            signal.signal(sig, handler)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_first_signal_is_a_stop_request_and_handlers_are_restored(
    own_handlers: None, sig: signal.Signals
) -> None:
    # Prepare
    seen: list[tuple[signal.Signals, str]] = []
    called = threading.Event()

    def on_stop(signum: signal.Signals) -> None:
        seen.append((signum, threading.current_thread().name))
        called.set()

    # Execute
    with SignalStop(on_stop=on_stop) as stop:
        assert signal.getsignal(sig) is not _previous_handler
        assert not stop.stopped
        os.kill(os.getpid(), sig)
        woke = stop.wait(10)

    # Assert: the process lives, the request is recorded, on_stop ran off the main thread.
    assert woke and stop.stopped and stop.signum is sig
    assert called.wait(10)
    assert seen == [(sig, "signal-stop")]
    with pytest.raises(StoppedBySignal) as info:
        stop.raise_if_stopped()
    assert info.value.exit_code == 128 + int(sig)
    assert signal.getsignal(sig) is _previous_handler


def test_second_signal_runs_on_second_and_exits_at_once(own_handlers: None) -> None:
    # Prepare: an exit that records instead of ending the test process.
    exits: list[int] = []
    second: list[signal.Signals] = []

    # Execute
    with SignalStop(on_second=second.append, exit_now=exits.append) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(10)
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 10
        while not exits and time.monotonic() < deadline:
            time.sleep(0.01)

    # Assert: the first signal stays the recorded one; the second went straight to the exit.
    assert second == [signal.SIGINT]
    assert exits == [128 + signal.SIGINT]
    assert stop.signum is signal.SIGTERM


def test_interruptible_raises_in_the_middle_of_a_wait(own_handlers: None) -> None:
    # Prepare
    with SignalStop() as stop:
        started = time.monotonic()

        # Execute: the handler raises inside the region, cutting the sleep short.
        with pytest.raises(StoppedBySignal) as info, stop.interruptible():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)

    # Assert
    assert time.monotonic() - started < 5
    assert info.value.signum is signal.SIGTERM
    assert str(info.value) == "stopped by SIGTERM"


def test_interruptible_after_a_stop_raises_on_entry(own_handlers: None) -> None:
    with SignalStop() as stop:
        os.kill(os.getpid(), signal.SIGHUP)
        assert stop.wait(10)
        entered = False
        with pytest.raises(StoppedBySignal), stop.interruptible():
            entered = True
        assert not entered


def test_outside_interruptible_the_main_thread_is_not_disturbed(own_handlers: None) -> None:
    # Prepare
    with SignalStop() as stop:
        # Execute: a "task" that gets a signal half-way still runs to its end.
        steps = []
        steps.append("before")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        steps.append("after")

    # Assert
    assert steps == ["before", "after"]
    assert stop.stopped


def test_sleep_or_raise_ends_a_backoff_early(own_handlers: None) -> None:
    with SignalStop() as stop:
        stop.sleep_or_raise(0.01)  # no request: an ordinary sleep
        timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM))
        timer.start()
        started = time.monotonic()
        try:
            with pytest.raises(StoppedBySignal):
                stop.sleep_or_raise(20)
        finally:
            timer.cancel()
    assert time.monotonic() - started < 5


def test_no_signals_installs_nothing() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with SignalStop(()) as stop:
        assert signal.getsignal(signal.SIGTERM) is before
        with stop.interruptible():
            pass
        stop.raise_if_stopped()
        assert not stop.wait(0.01)


def test_outside_the_main_thread_is_a_clear_error() -> None:
    errors: list[BaseException] = []

    def enter() -> None:
        try:
            with SignalStop():
                pass
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=enter)
    thread.start()
    thread.join(10)
    assert len(errors) == 1 and isinstance(errors[0], ConfigError)
    assert "main thread" in str(errors[0])


def test_stopped_by_signal_is_one_of_our_errors() -> None:
    error = StoppedBySignal(signal.SIGHUP, "stopped by SIGHUP: bye")
    assert isinstance(error, OpenflLikeError)
    assert error.exit_code == 129 and error.code == "stopped"
    assert error.message == "stopped by SIGHUP: bye"
