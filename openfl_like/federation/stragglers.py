"""Round deadline and quorum: one dead site must not stall the federation.

A round closes as soon as every assigned collaborator has finished. Past the deadline it closes
with those present when at least ``min_collaborators`` have delivered the round's main result;
without that quorum the plan says whether to keep waiting (the round then closes the moment the
quorum is reached) or to fail the federation.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from openfl_like.plan.schema import StragglerSettings


class Verdict(str, enum.Enum):
    OPEN = "open"
    CLOSE_COMPLETE = "complete"
    CLOSE_DEADLINE = "deadline"
    FAIL = "fail"


@dataclass(frozen=True)
class StragglerPolicy:
    settings: StragglerSettings

    def verdict(self, *, age_seconds: float, complete: bool, present: int) -> Verdict:
        if complete:
            return Verdict.CLOSE_COMPLETE
        s = self.settings
        if not s.enabled or age_seconds < s.round_deadline_seconds:
            return Verdict.OPEN
        if present >= s.min_collaborators:
            return Verdict.CLOSE_DEADLINE
        return Verdict.FAIL if s.on_deadline_without_quorum == "fail" else Verdict.OPEN

    def seconds_to_deadline(self, age_seconds: float) -> float | None:
        """Time until the deadline matters (None when off); 0 once it has passed."""
        if not self.settings.enabled:
            return None
        return max(0.0, self.settings.round_deadline_seconds - age_seconds)
