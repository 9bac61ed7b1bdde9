"""Who has been in touch with this aggregator process: joins and rejoins, logged once each.

An outage and its recovery should be readable from the aggregator's log alone: a collaborator's
first call to this process logs "col2 joined" (after an aggregator restart every collaborator
joins again, by handshake or by its next poll), a call from one that had been dropped for
silence "col2 rejoined after being dropped (...)", and a second handshake (a restarted
collaborator process) "col2 rejoined". Drops themselves are logged where they are decided
(``Aggregator.tick``, ``mark_revoked``). Pure bookkeeping under the aggregator's lock.
"""

from __future__ import annotations

from openfl_like.core.logging import get_logger

log = get_logger(__name__)


class Presence:
    def __init__(self) -> None:
        self._seen: set[str] = set()

    def contact(self, collaborator: str, round_number: int, *, readmitted: str = "",
                handshake: bool = False) -> None:
        """Note a call from ``collaborator``; ``readmitted``: why it had been dropped."""
        extra = {"round": round_number, "collaborator": collaborator}
        if collaborator not in self._seen:
            self._seen.add(collaborator)
            how = "" if handshake else " (first call to this aggregator process)"
            log.info("%s joined at round %d%s", collaborator, round_number, how, extra=extra)
        elif readmitted:
            log.info("%s rejoined at round %d after being dropped (%s)", collaborator,
                     round_number, readmitted, extra=extra)
        elif handshake:
            log.info("%s rejoined at round %d (a new handshake: the collaborator restarted)",
                     collaborator, round_number, extra=extra)
