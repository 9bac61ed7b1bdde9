"""The round closer: the one thread that closes rounds, so no RPC ever aggregates or waits.

RPC handlers record a result and, when the round state says the round is due, signal this
thread. It asks the aggregator for a ``CloseInput`` (under the aggregator's lock), runs the
``RoundTransaction`` outside the lock (the current model stays served meanwhile), then hands the
durable ``ClosedRound`` back to be swapped in, and writes the outputs after that.

Failures: a full disk is a passing condition: the close is retried every few seconds, for as
long as it takes, and the status says which path could not be written. Any other failure is
retried with exponential backoff; after ``max_attempts`` the federation ends as failed, with the
reason in the log, the status and every collaborator's answer. Either way nothing in memory
changed (see ``round_close``), so a retry can never apply an update twice.

Between closes the thread wakes at the round deadline and about once a second to drop silent
participants and to see whether a full disk has space again.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from openfl_like.core.errors import OpenflLikeError, UnavailableError
from openfl_like.core.logging import get_logger
from openfl_like.federation.round_close import (
    ClosedRound,
    CloseInput,
    RoundTransaction,
)

log = get_logger(__name__)

TICK_SECONDS = 1.0


@dataclass(frozen=True)
class CloseRetry:
    max_attempts: int = 5
    first_backoff_seconds: float = 0.2
    max_backoff_seconds: float = 5.0

    def backoff(self, attempt: int) -> float:
        return float(min(self.max_backoff_seconds, self.first_backoff_seconds * 2 ** attempt))


class CloseHost(Protocol):
    """What the closer needs from the aggregator (which holds the state and its lock)."""

    def tick(self) -> tuple[CloseInput | None, float | None]:
        """Drop silent participants, fail or pick a due round; and how long to sleep."""
        ...

    def commit(self, closed: ClosedRound) -> None: ...

    def abort_close(self, reason: str | None) -> None:
        """The close did not happen; ``reason`` set: the federation failed for it."""
        ...

    def set_disk_problem(self, message: str) -> None: ...

    def write_outputs(self, closed: ClosedRound) -> None: ...

    def on_start(self) -> None: ...


def _delete_in_background(paths: list[Path]) -> None:
    """Unlink files no state refers to, off the round's critical path (start-up sweeps any
    that a crash leaves behind)."""
    if not paths:
        return

    def unlink_all() -> None:
        for path in paths:
            with contextlib.suppress(OSError):
                path.unlink()

    threading.Thread(target=unlink_all, name="aggregator-cleanup", daemon=True).start()


class RoundCloser:
    def __init__(self, host: CloseHost, transaction: RoundTransaction, *,
                 retry: CloseRetry | None = None,
                 sleep_event: threading.Event | None = None) -> None:
        self._host = host
        self._transaction = transaction
        self._retry = retry or CloseRetry()
        self._signal = sleep_event or threading.Event()
        self._stopping = False
        self._busy = threading.Lock()  # held while a close (or its outputs) is in progress
        self._thread = threading.Thread(target=self._run, name="round-closer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def signal(self) -> None:
        """Something changed that may make the round due (cheap; called by RPC handlers)."""
        self._signal.set()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop after the close in progress, if any; True when the thread has ended."""
        self._stopping = True
        self._signal.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            self._host.on_start()
        except Exception:  # outputs are derived: redone from the state, never fatal
            log.exception("could not redo the exports of the ended federation")
        while not self._stopping:
            with self._busy:
                closed, sleep = self._close_if_due()
                if closed is not None:
                    self._finish(closed)
                    continue
            self._signal.wait(TICK_SECONDS if sleep is None else min(sleep, TICK_SECONDS))
            self._signal.clear()

    def _close_if_due(self) -> tuple[ClosedRound | None, float | None]:
        """Close the round if it is due; no reference to the round's input (its model) is kept
        past the transaction, so the old model is freed the moment the new one is swapped in."""
        inp, sleep = self._host.tick()
        if inp is None:
            return None, sleep
        return self._close(inp), None

    def _finish(self, closed: ClosedRound) -> None:
        self._host.commit(closed)
        _delete_in_background(closed.dead_files)
        try:
            self._host.write_outputs(closed)
        except Exception:  # outputs are derived: redone from the state, never fatal
            log.exception("could not write the outputs of round %d", closed.record["round"])

    def _close(self, inp: CloseInput) -> ClosedRound | None:
        """The transaction, retried (module docstring); None when it did not happen."""
        failures = 0
        while True:
            try:
                closed = self._transaction.run(inp)
            except UnavailableError as exc:  # out of disk space: wait for it, do not count
                log.error("round %d cannot close: %s", inp.round_number, exc.message)
                self._host.set_disk_problem(exc.message)
                if self._wait(self._retry.max_backoff_seconds):
                    self._host.abort_close(None)
                    return None
                continue
            except Exception as exc:
                failures += 1
                reason = exc.message if isinstance(exc, OpenflLikeError) else \
                    f"{type(exc).__name__}: {exc}"
                if failures >= self._retry.max_attempts:
                    log.error("round %d could not be closed after %d attempts: %s",
                              inp.round_number, failures, reason, exc_info=exc)
                    self._host.abort_close(f"round {inp.round_number} could not be closed: "
                                           f"{reason}")
                    return None
                pause = self._retry.backoff(failures - 1)
                log.warning("closing round %d failed (attempt %d of %d), retrying in %.1f s: "
                            "%s", inp.round_number, failures, self._retry.max_attempts,
                            pause, reason)
                if self._wait(pause):
                    self._host.abort_close(None)
                    return None
                continue
            return closed

    def _wait(self, seconds: float) -> bool:
        """Sleep between attempts; True when asked to stop meanwhile."""
        self._signal.wait(seconds)
        self._signal.clear()
        return self._stopping

    @property
    def busy(self) -> bool:
        return self._busy.locked()
