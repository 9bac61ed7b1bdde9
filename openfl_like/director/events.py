"""Each experiment's event log (stored in the registry) and the streams that follow it.

The log lives in SQLite only: a stream reads it in pages of ``PAGE`` events, so memory per
experiment stays bounded however long it ran. A follower that has read everything parks on its
own ``Wakeup`` (registered per experiment); a new event or the experiment's end wakes every
follower of that experiment at once: no polling.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from openfl_like.core.experiments import EventKind, ExperimentEvent
from openfl_like.core.waiting import Wakeup
from openfl_like.director.registry import Registry

PAGE = 256


class EventLog:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._lock = threading.Lock()
        self._followers: dict[str, set[Wakeup]] = {}

    def append(self, experiment: str, *, time: float, kind: EventKind, source: str,
               round_number: int = 0, task: str = "",
               metrics: Mapping[str, float] | None = None, text: str = "") -> ExperimentEvent:
        event = self.registry.append_event(experiment, time=time, kind=kind, source=source,
                                           round_number=round_number, task=task,
                                           metrics=metrics, text=text)
        self.wake(experiment)
        return event

    def wake(self, experiment: str) -> None:
        """Wake every follower of ``experiment`` (after events were stored elsewhere, or at its
        end)."""
        with self._lock:
            followers = list(self._followers.get(experiment, ()))
        for wakeup in followers:
            wakeup.wake()

    def followers(self, experiment: str) -> int:
        with self._lock:
            return len(self._followers.get(experiment, ()))

    def follower_count(self) -> int:
        """Streams following any experiment now."""
        with self._lock:
            return sum(len(group) for group in self._followers.values())

    @contextmanager
    def _following(self, experiment: str, wakeup: Wakeup) -> Iterator[None]:
        with self._lock:
            self._followers.setdefault(experiment, set()).add(wakeup)
        try:
            yield
        finally:
            with self._lock:
                group = self._followers.get(experiment)
                if group is not None:
                    group.discard(wakeup)
                    if not group:
                        del self._followers[experiment]

    def stream(self, experiment: str, from_seq: int, *, wakeup: Wakeup,
               settled: Callable[[], float | None]) -> Iterator[ExperimentEvent]:
        """Events from ``from_seq`` on; then each new one as it comes. Ends after the last
        event once the log is complete, or when ``wakeup`` is cancelled.

        ``settled`` is read before each page: None while the experiment runs, else the seconds
        until its log is complete (0: it is). An experiment's final STATUS event is stored in
        the same transaction as its final state, so a page read after seeing it final holds it;
        its envoys' last lines may still come, for at most the time ``settled`` says.
        """
        next_seq = max(1, from_seq)
        end_by: float | None = None  # monotonic: the grace counts from when the end is seen
        with self._following(experiment, wakeup):
            while not wakeup.cancelled:
                seen = wakeup.seq
                remaining = settled()
                if remaining is not None:
                    if end_by is None:
                        end_by = time.monotonic() + remaining
                    remaining = min(remaining, max(0.0, end_by - time.monotonic()))
                page = self.registry.events(experiment, next_seq, PAGE)
                for event in page:
                    if wakeup.cancelled:
                        return
                    yield event
                    next_seq = event.seq + 1
                if len(page) == PAGE:
                    continue
                if remaining is not None and remaining <= 0:
                    return
                wakeup.wait(seen, remaining)
