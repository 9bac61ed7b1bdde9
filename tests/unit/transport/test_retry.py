"""RetryPolicy on a fake clock: backoff caps, full jitter, total deadline, fatal errors."""

from __future__ import annotations

import random

import pytest

from openfl_like.transport.retry import RetryExhausted, RetryPolicy


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Transient(Exception):
    pass


def policy(clock: FakeClock, **kw: float) -> RetryPolicy:
    args = {"initial_backoff": 1.0, "max_backoff": 8.0, "multiplier": 2.0, "total_seconds": 60.0}
    args.update(kw)
    return RetryPolicy(**args, clock=clock, sleep=clock.sleep, rng=random.Random(7))  # type: ignore[arg-type]


def test_caps_grow_exponentially_up_to_the_maximum() -> None:
    p = policy(FakeClock())
    assert [p.cap(n) for n in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_waits_are_full_jitter_below_each_cap() -> None:
    p = policy(FakeClock())
    waits = [w for _, w in zip(range(200), p.waits(), strict=False)]
    for n, wait in enumerate(waits):
        assert 0.0 <= wait <= p.cap(n)
    late = waits[10:]
    assert min(late) < 2.0 and max(late) > 6.0  # spread over the whole range, not a constant


def test_succeeds_after_transient_failures() -> None:
    clock = FakeClock()
    outcomes = iter([Transient(), Transient(), "ok"])

    def operation() -> str:
        item = next(outcomes)
        if isinstance(item, Exception):
            raise item
        return item

    assert policy(clock).call(operation, is_retryable=lambda e: isinstance(e, Transient)) == "ok"
    assert len(clock.sleeps) == 2


def test_gives_up_at_the_total_deadline() -> None:
    clock = FakeClock()
    calls = []

    def operation() -> None:
        calls.append(clock.now)
        raise Transient("down")

    with pytest.raises(RetryExhausted) as caught:
        policy(clock, total_seconds=30.0).call(operation, is_retryable=lambda e: True)
    assert clock.now <= 30.0
    assert caught.value.attempts == len(calls) > 3
    assert isinstance(caught.value.last, Transient)


def test_fatal_errors_are_raised_at_once() -> None:
    clock = FakeClock()

    def operation() -> None:
        raise PermissionError("no")

    with pytest.raises(PermissionError):
        policy(clock).call(operation, is_retryable=lambda e: isinstance(e, Transient))
    assert clock.sleeps == []
