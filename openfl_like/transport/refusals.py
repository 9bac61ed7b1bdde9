"""Refused calls, logged once per peer and reason with a count: a hostile client cannot flood
the log.

For each (peer, reason) the first refusal is logged at once, with its message; later ones are
only counted, and reported as one line "... refused N more times in the last 61 s" at most once
per ``interval`` (60 s). The memory is bounded: at most ``max_keys`` keys (least recently
refused forgotten first), and at most ``new_keys_per_interval`` first-refusal lines per interval
(a client that changes address at every call cannot make a line per call either); what is over
either limit is counted in one "from other peers" line per interval. More than
``lines_per_sweep`` keys due at once become one line too.

The peer is the certificate's CN when the TLS handshake gave one, else the address without its
port (a reconnect does not make a new peer). The reason is the status code's name: never the
message, which may echo what the client sent.

Pending counts are reported at the next refusal after their interval (any peer's: due keys are
swept at most once a second) or by ``flush()``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

INTERVAL_SECONDS = 60.0
MAX_KEYS = 1000
NEW_KEYS_PER_INTERVAL = 20
LINES_PER_SWEEP = 10
SWEEP_SECONDS = 1.0

Key = tuple[str, str]  # (peer, reason)


@dataclass
class _Entry:
    since: float  # when this key's last line was written
    count: int = 0  # refusals since then, not yet reported
    method: str = ""
    message: str = ""


class RefusalLog:
    def __init__(self, logger: logging.Logger, *, interval: float = INTERVAL_SECONDS,
                 max_keys: int = MAX_KEYS, new_keys_per_interval: int = NEW_KEYS_PER_INTERVAL,
                 lines_per_sweep: int = LINES_PER_SWEEP,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logger
        self.interval = interval
        self.max_keys = max_keys
        self.new_keys_per_interval = new_keys_per_interval
        self.lines_per_sweep = lines_per_sweep
        self._clock = clock
        self._keys: OrderedDict[Key, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._budget_since = clock()
        self._new_keys = 0  # first-refusal lines in the current budget interval
        self._other = 0  # refusals over a limit, not yet reported
        self._other_since = clock()
        self._swept = clock()

    def __len__(self) -> int:
        return len(self._keys)

    def refused(self, peer: str, reason: str, message: str, *, method: str = "call",
                level: int = logging.WARNING) -> None:
        """Note one refusal; log it if it is the first of its key (module docstring)."""
        now = self._clock()
        lines: list[tuple[int, str, tuple[object, ...]]] = []
        with self._lock:
            key = (peer, reason)
            entry = self._keys.get(key)
            if entry is not None:
                entry.count += 1
                entry.method, entry.message = method, message
                self._keys.move_to_end(key)
            elif self._take_budget(now):
                self._keys[key] = _Entry(since=now)
                while len(self._keys) > self.max_keys:
                    _, old = self._keys.popitem(last=False)
                    self._count_other(old.count, now)
                lines.append((level, "%s from %s refused: %s %s (repeats are counted and "
                              "reported at most every %.0f s)",
                              (method, peer, reason, message, self.interval)))
            else:
                self._count_other(1, now)
            if now - self._swept >= SWEEP_SECONDS:
                self._swept = now
                lines.extend(self._due(now))
        for line_level, fmt, args in lines:
            self._log.log(line_level, fmt, *args)

    def flush(self) -> None:
        """Report every pending count now (e.g. at shutdown)."""
        with self._lock:
            lines = self._due(self._clock(), force=True)
        for level, fmt, args in lines:
            self._log.log(level, fmt, *args)

    def _count_other(self, count: int, now: float) -> None:
        if count and not self._other:
            self._other_since = now
        self._other += count

    def _take_budget(self, now: float) -> bool:
        if now - self._budget_since >= self.interval:
            self._budget_since, self._new_keys = now, 0
        if self._new_keys >= self.new_keys_per_interval:
            return False
        self._new_keys += 1
        return True

    def _due(self, now: float, *, force: bool = False
             ) -> list[tuple[int, str, tuple[object, ...]]]:
        due = [(key, e) for key, e in self._keys.items()
               if e.count and (force or now - e.since >= self.interval)]
        lines: list[tuple[int, str, tuple[object, ...]]] = []
        shown = due if len(due) <= self.lines_per_sweep else []
        for (peer, reason), entry in shown:
            lines.append((logging.WARNING, "%s from %s refused %d more time(s) in the last "
                          "%.0f s: %s %s",
                          (entry.method, peer, entry.count, now - entry.since, reason,
                           entry.message)))
        if not shown and due:
            total = sum(e.count for _, e in due)
            top = sorted(due, key=lambda item: -item[1].count)[:self.lines_per_sweep]
            listed = ", ".join(f"{peer} {reason} x{e.count}" for (peer, reason), e in top)
            lines.append((logging.WARNING, "%d refusal(s) from %d peer(s) in the last %.0f s: "
                          "%s%s", (total, len(due), self.interval, listed,
                                   ", ..." if len(due) > len(top) else "")))
        for _, entry in due:
            entry.count, entry.since = 0, now
        if self._other and (force or now - self._other_since >= self.interval):
            lines.append((logging.WARNING, "%d more refusal(s) in the last %.0f s from peers "
                          "not logged one by one (over %d new peers a minute or %d kept)",
                          (self._other, now - self._other_since, self.new_keys_per_interval,
                           self.max_keys)))
            self._other, self._other_since = 0, now
        return lines
