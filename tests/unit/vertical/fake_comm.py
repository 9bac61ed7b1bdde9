"""An in-memory pair with the communicator's party-facing API (``agreement.PartyComm``), for
testing the parties' protocol without the transport or the real Communicator's threads.

It keeps the contract's semantics that the training relies on: tensors keyed by (name, step),
kept until asked for; reader states in order per name, ``None`` once terminated; a goodbye fails
what the peer waits on; every wait has a timeout.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

import numpy as np

from openfl_like.core.vertical import (
    CommunicatorClosedError,
    OperationTimeoutError,
    PartyRole,
    PeerGoneError,
    ReaderState,
)

_END = object()


class FakeComm:
    def __init__(self, role: PartyRole, name: str, *, timeout_s: float = 5.0) -> None:
        self.role, self.name, self.timeout_s = role, name, timeout_s
        self.peer: FakeComm | None = None
        self.cond = threading.Condition()
        self.tensors: dict[tuple[str, int], np.ndarray] = {}
        self.controls: dict[str, collections.deque[Any]] = collections.defaultdict(
            collections.deque)
        self.step = 0
        self.closed = False
        self.peer_gone: str | None = None
        self.sent: list[tuple[str, int]] = []  # (what, step), for assertions

    @classmethod
    def pair(cls, leader: str = "shop", follower: str = "bank", **kw: Any
             ) -> tuple[FakeComm, FakeComm]:
        a, b = cls(PartyRole.LEADER, leader, **kw), cls(PartyRole.FOLLOWER, follower, **kw)
        a.peer, b.peer = b, a
        return a, b

    def add_step(self) -> int:
        self.step += 1
        return self.step

    def set_step(self, step: int) -> None:
        self.step = step

    def _deliver(self, put: Any) -> None:
        if self.closed:
            raise CommunicatorClosedError(f"{self.name}: communicator was shut down")
        assert self.peer is not None
        with self.peer.cond:
            if self.peer.closed:
                raise PeerGoneError(f"peer {self.peer.name} shut down")
            put(self.peer)
            self.peer.cond.notify_all()

    def _wait(self, what: str, ready: Any) -> Any:
        end = time.monotonic() + self.timeout_s
        with self.cond:
            while True:
                if self.closed:
                    raise CommunicatorClosedError(f"{self.name}: communicator was shut down")
                found = ready()
                if found is not None:
                    return found
                if self.peer_gone is not None:
                    raise PeerGoneError(f"{what}: peer shut down ({self.peer_gone})")
                left = end - time.monotonic()
                if left <= 0:
                    raise OperationTimeoutError(f"{what} at step {self.step} timed out")
                self.cond.wait(left)

    def send(self, name: str, array: np.ndarray, timeout_ms: int | None = None) -> None:
        step, value = self.step, np.array(array)
        self.sent.append((name, step))
        self._deliver(lambda peer: peer.tensors.__setitem__((name, step), value))

    def recv(self, name: str, dtype: object = None, timeout_ms: int | None = None) -> np.ndarray:
        key = (name, self.step)
        value = self._wait(f"recv {name!r}", lambda: self.tensors.pop(key, None))
        return value.astype(dtype) if dtype is not None else value

    def _control(self, name: str, item: Any) -> None:
        assert self.role is PartyRole.LEADER, "only the leader sends control messages"
        self.sent.append((f"control:{name}", self.step))
        self._deliver(lambda peer: peer.controls[name].append(item))

    def _next_control(self, name: str) -> Any:
        queue = self.controls[name]
        return self._wait(f"recv control {name!r}", lambda: queue.popleft() if queue else None)

    def send_ckpt_version(self, version: int) -> None:
        self._control("__ckpt__", version)

    def recv_ckpt_version(self, timeout_ms: int | None = None) -> int:
        return int(self._next_control("__ckpt__"))

    def send_reader_state(self, name: str, block_id: int, sample_index: int) -> None:
        self._control(name, ReaderState(name, block_id, sample_index))

    def terminate_reader(self, name: str) -> None:
        self._control(name, _END)

    def recv_reader_state(self, name: str, timeout_ms: int | None = None
                          ) -> ReaderState | None:
        item = self._next_control(name)
        return None if item is _END else item  # type: ignore[no-any-return]

    def shutdown(self, reason: str = "done") -> None:
        if self.closed:
            return
        self.closed = True
        assert self.peer is not None
        with self.peer.cond:
            self.peer.peer_gone = f"peer {self.name} shut down: {reason}"
            self.peer.cond.notify_all()
        with self.cond:
            self.cond.notify_all()
