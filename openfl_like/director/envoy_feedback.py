"""An experiment's log lines and task scalars, batched to the director in order, without gaps.

Producers (the collaborator's pipe readers) only put items on a queue; one sender thread per
experiment blocks on that queue, gathers a batch (up to ``batch_items`` items, or what arrives
within ``batch_seconds`` of the first) and sends it with ``port.send_feedback``.

Sequence numbers are per experiment, from 1 and without gaps. They are given when an item is
first put in a batch, after one empty call has told the sender the highest seq the director
already holds for this envoy (so an envoy that restarts an experiment continues the numbering
instead of having its lines dropped as repeats). An item stays unacknowledged until the
director's reply covers its seq; after an error every unacknowledged item is sent again (the
director drops the seqs it already has), after a backoff that grows to ``max_backoff``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from openfl_like.core.errors import OpenflLikeError
from openfl_like.core.experiments import EventKind, FeedbackItem
from openfl_like.core.logging import get_logger

log = get_logger(__name__)

SendFeedback = Callable[[str, Sequence[FeedbackItem]], int]

_CLOSE = object()
MAX_UNSENT = 100_000  # items kept while the director is unreachable; the oldest go first


class FeedbackChannel:
    """Queue + sender thread for one experiment (module docstring). ``close`` flushes."""

    def __init__(
        self,
        experiment: str,
        send: SendFeedback,
        *,
        clock: Callable[[], float] = time.time,
        batch_items: int = 50,
        batch_seconds: float = 0.2,
        max_batch: int = 500,
        initial_backoff: float = 0.5,
        max_backoff: float = 10.0,
    ) -> None:
        self.experiment = experiment
        self._send = send
        self._clock = clock
        self._batch_items = batch_items
        self._batch_seconds = batch_seconds
        self._max_batch = max_batch
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._fresh: list[FeedbackItem] = []     # not numbered yet
        self._unacked: list[FeedbackItem] = []   # numbered, not yet covered by a reply
        self._next_seq: int | None = None        # learnt from the director before the first send
        self._abort = threading.Event()
        self.dropped = 0
        self.acknowledged = 0  # the highest seq the director confirmed
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"feedback-{experiment}")
        self._thread.start()

    # -- producers -----------------------------------------------------------------------------

    def log_line(self, text: str) -> None:
        self._queue.put(FeedbackItem(seq=0, time=self._clock(), kind=EventKind.LOG, text=text))

    def metrics(self, round_number: int, task: str, scalars: Mapping[str, float]) -> None:
        self._queue.put(FeedbackItem(seq=0, time=self._clock(), kind=EventKind.METRICS,
                                     round_number=round_number, task=task,
                                     scalars=dict(scalars)))

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (a few attempts), then end the sender; waits up to ``timeout``."""
        self._queue.put(_CLOSE)
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._abort.set()  # stop retrying; whatever is left is lost
            self._thread.join(1.0)

    # -- the sender thread ---------------------------------------------------------------------

    def _run(self) -> None:
        backoff = self._initial_backoff
        closing = False
        final_attempts = 0
        while True:
            pending = bool(self._fresh or self._unacked)
            if not closing:
                # Nothing pending: block until an item comes. Pending after a failure: wait at
                # most the backoff, so a quiet experiment still gets its last lines through.
                closing = self._gather(None if not pending else backoff)
            if not (self._fresh or self._unacked):
                if closing:
                    return
                continue
            if self._flush():
                backoff = self._initial_backoff
                if closing and not (self._fresh or self._unacked):
                    return
                continue
            if closing:
                final_attempts += 1
                if final_attempts >= 3 or self._abort.wait(backoff):
                    lost = len(self._fresh) + len(self._unacked)
                    log.warning("%s: %d feedback item(s) could not be sent", self.experiment,
                                lost)
                    self.dropped += lost
                    return
            backoff = min(backoff * 2, self._max_backoff)

    def _gather(self, timeout: float | None) -> bool:
        """Move queued items to ``_fresh``: the first within ``timeout`` (None: wait for it),
        then more until the batch is full or ``batch_seconds`` passed. True once closing."""
        try:
            first = self._queue.get(timeout=timeout)
        except queue.Empty:
            return False
        if first is _CLOSE:
            self._drain()
            return True
        self._add(first)
        deadline = time.monotonic() + self._batch_seconds
        while len(self._fresh) < self._batch_items:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                item = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if item is _CLOSE:
                self._drain()
                return True
            self._add(item)
        return False

    def _drain(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _CLOSE:
                self._add(item)

    def _add(self, item: object) -> None:
        assert isinstance(item, FeedbackItem)
        self._fresh.append(item)
        overflow = len(self._fresh) + len(self._unacked) - MAX_UNSENT
        if overflow > 0:  # the director has been away for long: keep the newest
            del self._fresh[:overflow]
            self.dropped += overflow

    def _flush(self) -> bool:
        """Number the fresh items, send every unacknowledged one; True when all were taken."""
        try:
            if self._next_seq is None:
                self._next_seq = int(self._send(self.experiment, [])) + 1
            for item in self._fresh:
                self._unacked.append(replace(item, seq=self._next_seq))
                self._next_seq += 1
            self._fresh.clear()
            while self._unacked:
                batch = self._unacked[: self._max_batch]
                held = int(self._send(self.experiment, batch))
                self.acknowledged = max(self.acknowledged, held)
                remaining = [i for i in self._unacked if i.seq > held]
                if len(remaining) >= len(self._unacked):
                    log.warning("%s: the director holds seq %d only; will re-send %d item(s)",
                                self.experiment, held, len(remaining))
                    return False
                self._unacked = remaining
            return True
        except Exception as exc:  # the port raises OpenflLikeError; anything else is retried too
            shown = exc.message if isinstance(exc, OpenflLikeError) else repr(exc)
            log.warning("%s: sending feedback failed (will retry): %s", self.experiment, shown)
            return False
