"""The open round's bookkeeping: who owes what, who is alive, and whether the round is due.

Pure and in memory: no I/O, no locks, no clock of its own (callers pass ``now``); the
aggregator holds its lock around every call. Every question the RPC path asks is answered in
O(1) from running counters, so a result costs the same at 2 collaborators as at 1000:

- ``outstanding``: participants the round waits for that still have a task pending;
- ``present``: collaborators that delivered the round's main result (train, or the global
  validation of the final round), for the quorum;
- ``trains``: train results in (asynchronous mode closes a version at ``buffer_size``).

Liveness: a participant is expected in a round when it is not dropped at the round's start. It
is dropped when its certificate is revoked (at once) or when it has been silent (no call, no
parked long-poll, no upload streaming in) for the liveness timeout; a dropped participant stops
counting as outstanding at once, and one that calls again rejoins at the next round. Finding
silent ones is a scan that the closer runs about once a second, never an RPC.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from openfl_like.core.messages import ResultKey, TaskKind, TaskSpec
from openfl_like.federation.assigner import Assigner
from openfl_like.federation.state import ResultRecord
from openfl_like.plan.schema import ModeSettings, StragglerSettings


class Verdict(str, enum.Enum):
    """What the round should do now; the value is what ``closed_by`` records."""

    OPEN = "open"
    CLOSE_COMPLETE = "complete"  # every participant of the plan delivered
    CLOSE_ALL_LIVE = "all_live"  # every live participant delivered; some were dropped
    CLOSE_BUFFER = "buffer_full"  # asynchronous: buffer_size train updates are in
    CLOSE_DEADLINE = "deadline"  # the deadline passed with the quorum present
    FAIL = "fail"  # the deadline passed without the quorum, and the plan says fail


@dataclass(frozen=True)
class RoundRules:
    """What decides a round, from the plan."""

    collaborators: frozenset[str]
    rounds_to_train: int
    stragglers: StragglerSettings
    mode: ModeSettings
    liveness_timeout_seconds: float = 0.0  # 0: participants are never dropped for silence

    @property
    def is_async(self) -> bool:
        return self.mode.name == "async"


@dataclass
class RoundState:
    rules: RoundRules
    assigner: Assigner
    round_number: int
    started_at: float
    results: list[ResultRecord] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)
    done_tasks: dict[str, set[str]] = field(default_factory=dict)
    expected: set[str] = field(default_factory=set)
    outstanding: int = 0
    present: set[str] = field(default_factory=set)
    trains: int = 0
    last_seen: dict[str, float] = field(default_factory=dict)
    parked: dict[str, int] = field(default_factory=dict)  # calls in progress: polls, uploads
    dropped: dict[str, str] = field(default_factory=dict)  # name -> why

    # ----------------------------------------------------------------------- round lifecycle
    @classmethod
    def open(cls, rules: RoundRules, assigner: Assigner, round_number: int, now: float,
             results: Iterable[ResultRecord] = (), *, last_seen: dict[str, float] | None = None,
             dropped: dict[str, str] | None = None) -> RoundState:
        """Round ``round_number`` with the results already journalled for it (on resume)."""
        state = cls(rules, assigner, round_number, now,
                    last_seen=dict(last_seen) if last_seen is not None
                    else dict.fromkeys(rules.collaborators, now),
                    dropped=dict(dropped or {}))
        state.expected = {c for c in rules.collaborators if c not in state.dropped}
        state.outstanding = sum(1 for c in state.expected if state.assigned(c))
        for record in results:
            state.record(record)
        return state

    def next_round(self, round_number: int, now: float) -> RoundState:
        """A fresh round that keeps what is known about the participants (when each was last
        seen, who is dropped, and the long-polls parked right now: they outlive the round)."""
        state = RoundState.open(self.rules, self.assigner, round_number, now,
                                last_seen=self.last_seen, dropped=self.dropped)
        state.parked = dict(self.parked)
        return state

    # ------------------------------------------------------------------------------ queries
    @property
    def is_final(self) -> bool:
        return self.round_number >= self.rules.rounds_to_train

    @property
    def primary_task(self) -> str:
        return TaskKind.VALIDATE_GLOBAL.value if self.is_final else TaskKind.TRAIN.value

    def assigned(self, collaborator: str, round_number: int | None = None
                 ) -> tuple[TaskSpec, ...]:
        r = self.round_number if round_number is None else round_number
        return self.assigner.tasks_for(collaborator, r, final=r >= self.rules.rounds_to_train)

    def pending(self, collaborator: str) -> tuple[TaskSpec, ...]:
        done = self.done_tasks.get(collaborator, set())
        return tuple(t for t in self.assigned(collaborator) if t.name not in done)

    def has(self, key: ResultKey) -> bool:
        return str(key) in self.keys

    def age(self, now: float) -> float:
        return now - self.started_at

    def seconds_to_deadline(self, now: float) -> float | None:
        s = self.rules.stragglers
        if not s.enabled:
            return None
        return max(0.0, s.round_deadline_seconds - self.age(now))

    def verdict(self, now: float) -> Verdict:
        """O(1): close, fail or keep waiting (module docstring)."""
        rules = self.rules
        s = rules.stragglers
        quorum = s.min_collaborators
        if rules.is_async and not self.is_final:
            quorum = max(1, min(quorum, rules.mode.buffer_size))
            if self.trains >= rules.mode.buffer_size:
                return Verdict.CLOSE_BUFFER
        have_quorum = len(self.present) >= quorum
        if self.outstanding == 0 and self.present:
            if len(self.expected) == len(rules.collaborators) and not self.dropped:
                return Verdict.CLOSE_COMPLETE
            if have_quorum:
                return Verdict.CLOSE_ALL_LIVE
        if not s.enabled or self.age(now) < s.round_deadline_seconds:
            return Verdict.OPEN
        if have_quorum:
            return Verdict.CLOSE_DEADLINE
        return Verdict.FAIL if s.on_deadline_without_quorum == "fail" else Verdict.OPEN

    def next_liveness_check(self, now: float) -> float | None:
        """Seconds until someone could time out (None when liveness is off)."""
        timeout = self.rules.liveness_timeout_seconds
        if timeout <= 0:
            return None
        waiting = [self.last_seen.get(c, now) for c in self.expected if c not in self.dropped
                   and not self.parked.get(c)]
        if not waiting:
            return timeout
        return max(0.0, min(waiting) + timeout - now)

    # ------------------------------------------------------------------------------ updates
    def record(self, record: ResultRecord) -> None:
        """Count one accepted result (the caller checked it is new and belongs here)."""
        key = record.key
        self.results.append(record)
        self.keys.add(str(key))
        c = key.collaborator
        if key.task_name == self.primary_task:
            self.present.add(c)
        if key.task_name == TaskKind.TRAIN.value:
            self.trains += 1
        if key.round_number != self.round_number:
            return  # an asynchronous stale update: it owes nothing in this round
        done = self.done_tasks.setdefault(c, set())
        before = bool(self.pending(c))
        done.add(key.task_name)
        if before and not self.pending(c) and c in self.expected:
            self.outstanding -= 1

    def touch(self, collaborator: str, now: float) -> str:
        """A call from ``collaborator``: it is alive (and rejoins next round if dropped).
        Returns why it had been dropped when this call readmits it, else ''."""
        self.last_seen[collaborator] = now
        why = self.dropped.get(collaborator, "")
        if why and not why.startswith("revoked"):
            del self.dropped[collaborator]
            return why
        return ""

    def park(self, collaborator: str, delta: int) -> None:
        self.parked[collaborator] = self.parked.get(collaborator, 0) + delta

    def drop(self, collaborator: str, reason: str) -> bool:
        """Stop waiting for ``collaborator`` in this round and later ones; False if already."""
        if collaborator in self.dropped or collaborator not in self.rules.collaborators:
            return False
        self.dropped[collaborator] = reason
        if collaborator in self.expected:
            self.expected.discard(collaborator)
            if self.pending(collaborator):
                self.outstanding -= 1
        return True

    def readmit(self, collaborator: str) -> None:
        """Undo a revocation drop (a new certificate for the same name was accepted)."""
        self.dropped.pop(collaborator, None)

    def silent(self, now: float) -> list[str]:
        """Participants silent for longer than the liveness timeout (the closer's scan)."""
        timeout = self.rules.liveness_timeout_seconds
        if timeout <= 0:
            return []
        return sorted(c for c in self.rules.collaborators
                      if c not in self.dropped and not self.parked.get(c)
                      and now - self.last_seen.get(c, now) > timeout)
