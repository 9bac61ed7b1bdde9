"""Alarms that fire callbacks at deadlines, from one shared thread.

Why: a synchronous grpc handler reading a client stream blocks in ``next(request_iterator)``
with no timeout of its own, so a client that opens an upload and never sends would hold a
worker thread for the whole call deadline (an hour for streams). The servicer arms an alarm
before that read and disarms it after; when it fires, the call is ended from this thread
(:func:`expire_call`), which wakes the blocked read and frees the worker.

One thread serves every alarm (a heap of deadlines), started when the first alarm is armed and
ending once none is left, so an idle server keeps no thread for it.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable

import grpc

from openfl_like.core.logging import get_logger

_log = get_logger(__name__)

_ARMED, _DISARMED, _FIRED = "armed", "disarmed", "fired"


class Alarm:
    """One armed deadline; :meth:`disarm` tells whether it was in time."""

    def __init__(self, deadline: float, callback: Callable[[], None]) -> None:
        self.deadline = deadline
        self._callback = callback
        self._state = _ARMED
        self._lock = threading.Lock()

    def disarm(self) -> bool:
        """Stop the alarm: True when it had not fired, False when it fired already."""
        with self._lock:
            if self._state == _ARMED:
                self._state = _DISARMED
                return True
            return self._state == _DISARMED

    @property
    def fired(self) -> bool:
        return self._state == _FIRED

    @property
    def cancelled(self) -> bool:
        return self._state == _DISARMED

    def _fire(self) -> None:
        with self._lock:
            if self._state != _ARMED:
                return
            self._state = _FIRED
        try:
            self._callback()
        except Exception:  # an alarm must never kill the thread that serves all the others
            _log.exception("alarm callback failed")


class Watchdog:
    """Fires :class:`Alarm` callbacks at their deadlines from one thread (see module docstring)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Alarm]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, callback: Callable[[], None]) -> Alarm:
        alarm = Alarm(self._clock() + seconds, callback)
        with self._cond:
            heapq.heappush(self._heap, (alarm.deadline, next(self._seq), alarm))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="fx-watchdog", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        return alarm

    @property
    def running(self) -> bool:
        with self._cond:
            return self._thread is not None

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][2].cancelled:
                    heapq.heappop(self._heap)  # disarmed in time: drop without waiting
                if not self._heap:
                    self._thread = None  # nothing left: end; the next arm starts a new thread
                    return
                deadline, _, alarm = self._heap[0]
                delay = deadline - self._clock()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                heapq.heappop(self._heap)
            alarm._fire()


def expire_call(context: grpc.ServicerContext, details: str) -> None:
    """End a server call now with DEADLINE_EXCEEDED and ``details``, from any thread.

    grpc's public ``context.abort`` only works from the handler's own thread (it raises there),
    and ``context.cancel()`` reaches the client as a bare CANCELLED. The core call behind the
    context can be cancelled with a status (``grpc_call_cancel_with_status``), which the client
    receives as such and which wakes a handler blocked reading the request stream. Should a grpc
    release move that object, this falls back to ``context.cancel()``: the worker is still freed.
    """
    call = getattr(getattr(context, "_rpc_event", None), "call", None)
    try:
        call.cancel(grpc.StatusCode.DEADLINE_EXCEEDED.value[0], details)  # type: ignore[union-attr]
    except Exception:  # any failure of the private path: use the public one
        context.cancel()  # type: ignore[attr-defined]
