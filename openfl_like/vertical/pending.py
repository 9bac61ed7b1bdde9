"""Pending communicator operations and the monitor that fails the ones past their deadline.

Every blocking ``send``/``recv`` registers here while it waits (a ``recv`` whose tensor is
already in the inbox never does: the hot path costs one dict look-up). The monitor thread scans
every ``scan_interval`` seconds and calls the operation's ``fail`` callback with an
:class:`OperationTimeoutError` naming the operation, the tensor or control name, the step, the
timeout and the peer, so a party whose peer is gone or stuck never hangs.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from openfl_like.core.logging import get_logger
from openfl_like.core.vertical import OperationTimeoutError

_log = get_logger(__name__)

FailCallback = Callable[[BaseException], None]


@dataclass(frozen=True)
class PendingOp:
    """One waiting operation: ``kind`` is "send" or "recv" (or a control op's name)."""

    kind: str
    name: str
    step: int
    started: float
    deadline: float
    fail: FailCallback
    outbound: bool = False  # a send (fails at once when the peer says goodbye)

    @property
    def timeout_s(self) -> float:
        return self.deadline - self.started

    def describe(self) -> str:
        what = f"{self.kind} {self.name!r}" if self.name else self.kind
        return f"{what} at step {self.step}"


class PendingOps:
    """Thread-safe registry of waiting operations, keyed by a token from :meth:`add`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._ops: dict[int, PendingOp] = {}
        self._tokens = itertools.count(1)

    def add(self, kind: str, name: str, step: int, timeout_s: float, fail: FailCallback, *,
            outbound: bool = False) -> int:
        now = self.clock()
        op = PendingOp(kind, name, step, now, now + timeout_s, fail, outbound)
        with self._lock:
            token = next(self._tokens)
            self._ops[token] = op
        return token

    def remove(self, token: int) -> None:
        with self._lock:
            self._ops.pop(token, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._ops)

    def take_expired(self, now: float | None = None) -> list[PendingOp]:
        """Remove and return the operations whose deadline has passed."""
        now = self.clock() if now is None else now
        with self._lock:
            expired = [token for token, op in self._ops.items() if op.deadline <= now]
            return [self._ops.pop(token) for token in expired]

    def take_all(self) -> list[PendingOp]:
        with self._lock:
            ops = list(self._ops.values())
            self._ops.clear()
            return ops

    def fail_outbound(self, error: Callable[[PendingOp], BaseException]) -> int:
        """Fail every waiting send with ``error(op)`` (the peer said goodbye)."""
        with self._lock:
            tokens = [token for token, op in self._ops.items() if op.outbound]
            ops = [self._ops.pop(token) for token in tokens]
        for op in ops:
            _safe_fail(op, error(op))
        return len(ops)

    def fail_all(self, error: BaseException) -> int:
        """Fail every waiting operation with ``error`` (shutdown); returns how many."""
        ops = self.take_all()
        for op in ops:
            _safe_fail(op, error)
        return len(ops)


def timeout_error(op: PendingOp, peer: str) -> OperationTimeoutError:
    return OperationTimeoutError(
        f"{op.describe()} timed out after {op.timeout_s:.1f} s ({peer})"
    )


class Monitor:
    """Daemon thread failing expired operations; the callbacks run outside the registry lock."""

    def __init__(self, ops: PendingOps, scan_interval_s: float, peer: str) -> None:
        if scan_interval_s <= 0:
            raise ValueError("scan_interval_ms must be positive")
        self.ops = ops
        self.scan_interval_s = scan_interval_s
        self.peer = peer
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="vertical-monitor", daemon=True)
        self._thread.start()

    def scan(self) -> int:
        """One pass; returns how many operations it failed."""
        expired = self.ops.take_expired()
        for op in expired:
            error = timeout_error(op, self.peer)
            _log.warning("%s", error)
            _safe_fail(op, error)
        return len(expired)

    def _run(self) -> None:
        while not self._stop.wait(self.scan_interval_s):
            try:
                self.scan()
            except Exception:  # pragma: no cover - a bug in a callback must not stop the monitor
                _log.exception("vertical monitor scan failed")

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)


def _safe_fail(op: PendingOp, error: BaseException) -> None:
    try:
        op.fail(error)
    except Exception:  # pragma: no cover - defensive: one bad callback must not block the rest
        _log.exception("failing %s raised", op.describe())
