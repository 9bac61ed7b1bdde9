"""The aggregator's live state, shared by its RPC handlers, its result intake and its closer.

One lock guards it all: the committed ``AggregatorState`` (what is on disk), the open
``RoundState``, the model being served and the flags the RPC path reads. It is never held across
disk I/O bigger than one journal line, and never while a round is aggregated.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from openfl_like.core.waiting import Wakeup
from openfl_like.federation.presence import Presence
from openfl_like.federation.round_state import RoundState
from openfl_like.federation.state import AggregatorState


@dataclass(eq=False)
class LiveState:
    state: AggregatorState  # committed: the last snapshot written
    model: dict[str, np.ndarray]  # the global model of ``state.round_number``, read-only arrays
    round: RoundState  # the open round
    clock: Callable[[], float]
    lock: threading.Lock = field(default_factory=threading.Lock)
    closing: bool = False  # the closer is building the next round
    stopped: bool = False  # shutting down: no new work, uploads told to come back later
    disk_problem: str = ""  # a write failed for space: uploads refused until there is room
    waiters: set[Wakeup] = field(default_factory=set)  # parked long-polls
    ended: threading.Event = field(default_factory=threading.Event)  # done (exported) or failed
    presence: Presence = field(default_factory=Presence)  # logs joins and rejoins

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)  # a round closed or the run ended

    def finished(self) -> bool:
        return self.state.done or bool(self.state.failed)

    def touch(self, collaborator: str, *, handshake: bool = False) -> None:
        """A call from ``collaborator`` (lock held): alive now; a join or rejoin is logged."""
        readmitted = self.round.touch(collaborator, self.clock())
        self.presence.contact(collaborator, self.state.round_number, readmitted=readmitted,
                              handshake=handshake)

    def set_disk_problem(self, message: str) -> None:
        with self.lock:
            self.disk_problem = message

    def wake_all(self) -> None:
        """Wake every parked long-poll (lock held): O(waiters), one flag each."""
        for waiter in list(self.waiters):
            waiter.wake()
        self.changed.notify_all()
