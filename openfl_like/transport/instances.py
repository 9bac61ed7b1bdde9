"""One live process per participant name.

Each client process sends a random instance id (gRPC metadata ``fx-instance``) with every call.
A call from a second instance of a name is refused (PERMISSION_DENIED) while the first one is
alive: it made a call, or sat in a long-poll, less than ``takeover_seconds`` ago. Once the first
has been silent that long (it crashed, or its host died) a new instance takes the name over, so
a restarted collaborator is never locked out for good. The same certificate used on two hosts
at once is a misconfiguration the operator must hear about; results stay idempotent either way.
Calls without an instance id (old clients, tools) are not tracked. A process that stops on purpose
says so (``LEAVING_METADATA_KEY`` on its last call) and frees the name for its successor at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from openfl_like.core.errors import PermissionDeniedError
from openfl_like.core.logging import get_logger

INSTANCE_METADATA_KEY = "fx-instance"
# Sent (with any value) by a client that stops on purpose: its name is free for a new process
# at once, instead of after ``takeover_seconds``.
LEAVING_METADATA_KEY = "fx-leaving"

_log = get_logger(__name__)


@dataclass
class _Holder:
    instance: str
    last_seen: float
    polls: int = 0  # long-polls in progress: a parked instance is alive however long it waits


class InstanceRegistry:
    def __init__(
        self, takeover_seconds: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.takeover_seconds = takeover_seconds
        self._clock = clock
        self._holders: dict[str, _Holder] = {}
        self._lock = threading.Lock()

    def claim(self, name: str, instance: str) -> None:
        """Record a call of ``instance`` as ``name``; refuse it if another instance is alive."""
        if not instance:
            return
        now = self._clock()
        with self._lock:
            holder = self._holders.get(name)
            if holder is None or holder.instance == instance:
                self._holders[name] = _Holder(instance, now)
                return
            silent = 0.0 if holder.polls else now - holder.last_seen
            if silent < self.takeover_seconds:
                raise PermissionDeniedError(
                    f"{name!r} is already connected from another process (active {silent:.1f} s "
                    f"ago); a second instance with the same certificate is refused. If that "
                    f"process has stopped, start again in {self.takeover_seconds - silent:.0f} s"
                )
            _log.warning("%s: instance %s takes over from %s (silent for %.1f s)", name,
                         instance[:8], holder.instance[:8], silent)
            self._holders[name] = _Holder(instance, now)

    def release(self, name: str, instance: str) -> None:
        """The holder stops on purpose: a new instance may take the name at once."""
        with self._lock:
            holder = self._holders.get(name)
            if holder is not None and holder.instance == instance:
                del self._holders[name]
                _log.info("%s: instance %s left", name, instance[:8])

    def poll(self, name: str, instance: str, delta: int) -> None:
        """A long-poll of the current holder starts (+1) or ends (-1)."""
        with self._lock:
            holder = self._holders.get(name)
            if holder is not None and holder.instance == instance:
                holder.polls = max(0, holder.polls + delta)
                holder.last_seen = self._clock()

    def touch(self, name: str, instance: str) -> None:
        """A long-poll of the current holder is still waiting: it is alive."""
        with self._lock:
            holder = self._holders.get(name)
            if holder is not None and holder.instance == instance:
                holder.last_seen = self._clock()
