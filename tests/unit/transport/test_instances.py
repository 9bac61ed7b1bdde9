"""One live process per participant name, with takeover after silence."""

from __future__ import annotations

import pytest

from openfl_like.core.errors import PermissionDeniedError
from openfl_like.transport.instances import InstanceRegistry


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_second_instance_is_refused_while_the_first_is_alive() -> None:
    # Prepare
    clock = FakeClock()
    registry = InstanceRegistry(30.0, clock=clock)
    registry.claim("col1", "aaaa")
    clock.now += 29.0
    # Execute / Assert
    with pytest.raises(PermissionDeniedError, match="already connected from another process"):
        registry.claim("col1", "bbbb")
    registry.claim("col1", "aaaa")  # the first goes on
    registry.claim("col2", "bbbb")  # other names are independent


def test_a_parked_long_poll_keeps_the_holder_alive() -> None:
    clock = FakeClock()
    registry = InstanceRegistry(30.0, clock=clock)
    registry.claim("col1", "aaaa")
    for _ in range(5):
        clock.now += 20.0
        registry.touch("col1", "aaaa")
    clock.now += 20.0
    with pytest.raises(PermissionDeniedError, match="start again in 10 s"):
        registry.claim("col1", "bbbb")


def test_silent_holder_is_taken_over_and_then_refused() -> None:
    clock = FakeClock()
    registry = InstanceRegistry(30.0, clock=clock)
    registry.claim("col1", "aaaa")
    clock.now += 31.0
    registry.claim("col1", "bbbb")  # restarted after a crash: takes over
    with pytest.raises(PermissionDeniedError):
        registry.claim("col1", "aaaa")  # the old one, if it comes back, is now the intruder


def test_calls_without_instance_id_are_not_tracked() -> None:
    registry = InstanceRegistry(30.0, clock=FakeClock())
    registry.claim("col1", "")
    registry.claim("col1", "bbbb")
    registry.claim("col1", "")


def test_a_holder_that_leaves_frees_the_name_at_once_and_only_its_own() -> None:
    # Prepare
    clock = FakeClock()
    registry = InstanceRegistry(30.0, clock=clock)
    registry.claim("col1", "aaaa")
    # Execute: somebody else's release is ignored; the holder's own frees the name
    registry.release("col1", "bbbb")
    with pytest.raises(PermissionDeniedError):
        registry.claim("col1", "bbbb")
    registry.release("col1", "aaaa")
    # Assert: the successor is accepted at once, without waiting out the takeover time
    registry.claim("col1", "bbbb")


def test_a_holder_parked_in_a_long_poll_is_alive_however_long_it_waits() -> None:
    clock = FakeClock()
    registry = InstanceRegistry(30.0, clock=clock)
    registry.claim("col1", "aaaa")
    registry.poll("col1", "aaaa", +1)
    clock.now += 120.0
    with pytest.raises(PermissionDeniedError):
        registry.claim("col1", "bbbb")
    registry.poll("col1", "aaaa", -1)
    clock.now += 31.0
    registry.claim("col1", "bbbb")  # silent since the poll ended: taken over
