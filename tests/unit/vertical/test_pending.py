"""The pending-operation registry and its monitor."""

from __future__ import annotations

import pytest

from openfl_like.core.vertical import OperationTimeoutError
from openfl_like.vertical.pending import Monitor, PendingOps


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_monitor_fails_only_expired_ops_with_a_named_error() -> None:
    clock = _Clock()
    ops = PendingOps(clock)
    failed: dict[str, BaseException] = {}
    ops.add("recv", "gradient", 12, 5.0, lambda e: failed.__setitem__("gradient", e))
    ops.add("send", "embedding", 12, 60.0, lambda e: failed.__setitem__("embedding", e))
    token = ops.add("recv", "gone", 12, 1.0, lambda e: failed.__setitem__("gone", e))
    ops.remove(token)
    monitor = Monitor(ops, 0.1, "peer bank at 127.0.0.1:50072")
    clock.now = 104.9
    assert monitor.scan() == 0
    clock.now = 105.0
    assert monitor.scan() == 1
    assert list(failed) == ["gradient"]
    assert isinstance(failed["gradient"], OperationTimeoutError)
    assert str(failed["gradient"]) == ("recv 'gradient' at step 12 timed out after 5.0 s "
                                       "(peer bank at 127.0.0.1:50072)")
    assert len(ops) == 1
    assert ops.fail_all(RuntimeError("closed")) == 1
    assert str(failed["embedding"]) == "closed" and len(ops) == 0


def test_monitor_needs_a_positive_interval() -> None:
    with pytest.raises(ValueError):
        Monitor(PendingOps(), 0, "peer")
