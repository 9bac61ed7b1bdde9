"""An in-memory pair of transports for tests: what one end sends goes straight into the other
end's inbox (no gRPC, no TLS), with optional injected delay and loss, so the communicator's
logic (and a training loop over it) runs in two threads of one process.

    leader_end, follower_end = memory_pair()
    leader = Communicator.over_link("leader", leader_end, name="shop", peer_name="bank", ...)

Like the real client, a send to a peer that is not up yet (its ``start`` not called) or whose
inbox is full (RESOURCE_EXHAUSTED) is retried with a short backoff until its timeout; a refusal
(``RefusedError``, ``PlanMismatchError``) is final. A dropped message is never delivered: its
send stays pending until cancelled (by the monitor) or the link is closed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from openfl_like.core.errors import (
    ConnectionFailedError,
    DeadlineExceededError,
    ResourceExhaustedError,
)
from openfl_like.core.vertical import Control, Hello, StepTensor
from openfl_like.transport.vertical_handlers import VerticalHandler
from openfl_like.vertical.wiring import Wire

# drop(kind, message) -> True to lose it; kind is "connect", "tensor" or "control".
DropRule = Callable[[str, object], bool]
_RETRYABLE = (ConnectionFailedError, ResourceExhaustedError)


class _Send:
    """A :class:`~openfl_like.vertical.link.PendingSend` completed by a delivery thread."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self._error: BaseException | None = None

    def finish(self, error: BaseException | None = None) -> None:
        if not self._done.is_set():
            self._error = error
            self._done.set()

    def result(self) -> None:
        self._done.wait()
        if self._error is not None:
            raise self._error

    def cancel(self) -> None:
        self.finish(ConnectionFailedError("send cancelled"))

    def done(self) -> bool:
        return self._done.is_set()


@dataclass
class MemoryEnd:
    """One party's end; ``start`` is its server coming up."""

    label: str
    delay_s: float = 0.0
    drop: DropRule | None = None
    peer: MemoryEnd | None = None
    handler: VerticalHandler | None = None
    sent: list[object] = field(default_factory=list)  # what this end delivered, for tests

    def start(self, handler: VerticalHandler) -> Wire:
        self.handler = handler
        return Wire(link=MemoryLink(self), port=0, stop=self._stop)

    def _stop(self, grace: float) -> None:
        self.handler = None


class MemoryLink:
    """The :class:`~openfl_like.vertical.link.PeerLink` of a :class:`MemoryEnd`."""

    def __init__(self, end: MemoryEnd) -> None:
        self.end = end
        self._closed = threading.Event()
        self._sends: set[_Send] = set()
        self._lock = threading.Lock()

    def connect(self, hello: Hello, timeout_s: float) -> None:
        if not self._deliver("connect", hello, lambda h: h.on_connect(hello)):
            raise DeadlineExceededError(f"connect of {self.end.label} lost (dropped)")

    def send_tensor(self, name: str, step: int, array: np.ndarray, timeout_s: float) -> _Send:
        tensor = StepTensor(name, step, np.array(array, copy=True))
        return self._start("tensor", tensor, lambda h: h.on_tensor(tensor), timeout_s)

    def send_control(self, control: Control, timeout_s: float) -> _Send:
        return self._start("control", control, lambda h: h.on_control(control), timeout_s)

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            sends, self._sends = list(self._sends), set()
        for send in sends:
            send.finish(ConnectionFailedError(f"link of {self.end.label} closed"))

    # ------------------------------------------------------------------ internals
    def _deliver(self, kind: str, message: object,
                 call: Callable[[VerticalHandler], None]) -> bool:
        """One attempt; False when the message was dropped."""
        if self._closed.is_set():
            raise ConnectionFailedError(f"link of {self.end.label} is closed")
        if self.end.drop is not None and self.end.drop(kind, message):
            return False
        if self.end.delay_s:
            time.sleep(self.end.delay_s)
        handler = self.end.peer.handler if self.end.peer is not None else None
        if handler is None:
            raise ConnectionFailedError(f"peer of {self.end.label} is not listening")
        call(handler)
        self.end.sent.append(message)
        return True

    def _start(self, kind: str, message: object, call: Callable[[VerticalHandler], None],
               timeout_s: float) -> _Send:
        send = _Send()
        if not self.end.delay_s:  # the fast path: deliver now, in the caller's thread
            try:
                if self._deliver(kind, message, call):
                    send.finish()
                    return send
                return self._track(send)
            except _RETRYABLE:
                pass
            except BaseException as error:
                send.finish(error)
                return send
        self._track(send)
        threading.Thread(target=self._retry, args=(send, kind, message, call, timeout_s),
                         daemon=True, name=f"memory-send-{self.end.label}").start()
        return send

    def _track(self, send: _Send) -> _Send:
        with self._lock:
            self._sends.add(send)
        return send

    def _retry(self, send: _Send, kind: str, message: object,
               call: Callable[[VerticalHandler], None], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        wait = 0.005
        try:
            while not send.done():
                try:
                    if not self._deliver(kind, message, call):
                        return  # lost: stays pending until cancelled or closed
                    send.finish()
                    return
                except _RETRYABLE as error:
                    if time.monotonic() + wait > deadline:
                        send.finish(error)
                        return
                    time.sleep(wait)
                    wait = min(wait * 2, 0.1)
                except BaseException as error:
                    send.finish(error)
                    return
        finally:
            if send.done():
                with self._lock:
                    self._sends.discard(send)


def memory_pair(
    labels: tuple[str, str] = ("a", "b"),
    *,
    delay_s: float = 0.0,
    drop: DropRule | None = None,
) -> tuple[MemoryEnd, MemoryEnd]:
    """Two connected ends; ``delay_s``/``drop`` apply to both directions."""
    a = MemoryEnd(labels[0], delay_s=delay_s, drop=drop)
    b = MemoryEnd(labels[1], delay_s=delay_s, drop=drop)
    a.peer, b.peer = b, a
    return a, b
