"""Small pieces of the communicator's life cycle: the stack of what ``initialize`` started
(stopped in order by whichever of ``shutdown`` or a failed ``initialize`` comes first), the
best-effort goodbye, and waiting for a send's acknowledgement under the monitor.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from openfl_like.core.logging import get_logger
from openfl_like.core.vertical import Control
from openfl_like.vertical.link import PeerLink, PendingSend
from openfl_like.vertical.pending import PendingOps

_log = get_logger(__name__)


class StopStack:
    """Stop callbacks in start order; :meth:`stop_all` runs those not run yet (thread-safe)."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._lock = threading.Lock()
        self._stops: list[Callable[[], None]] = []

    def push(self, stop: Callable[[], None]) -> None:
        with self._lock:
            self._stops.append(stop)

    def stop_all(self) -> None:
        with self._lock:
            stops, self._stops = self._stops, []
        for stop in stops:
            try:
                stop()
            except Exception as error:  # keep stopping the rest
                _log.warning("stopping %s: %s", self.owner, error)


def say_goodbye(link: PeerLink, control: Control, timeout_s: float, peer_desc: str) -> None:
    """Send the goodbye; never raises, never waits much longer than ``timeout_s``."""
    try:
        pending = link.send_control(control, timeout_s)
        backstop = threading.Timer(timeout_s + 0.5, pending.cancel)
        backstop.daemon = True
        backstop.start()
        try:
            pending.result()
        finally:
            backstop.cancel()
    except Exception as error:  # best effort: the peer may be gone already
        _log.info("goodbye to %s not delivered: %s", peer_desc, error)


def await_send(
    ops: PendingOps,
    pending: PendingSend,
    *,
    op: str,
    name: str,
    step: int,
    timeout_s: float,
    failed_already: Callable[[], BaseException | None],
    closed: Callable[[], BaseException | None],
) -> None:
    """Wait for ``pending``'s acknowledgement, registered with the monitor. When the monitor
    (timeout), a shutdown or the peer's goodbye fails it, that error is raised, not the link's
    "cancelled"; ``failed_already`` is checked once registered (shut down, peer gone). A
    send already decided is not registered: its failure is explained the same way."""
    if pending.done():  # decided already (the blocking first attempt): nothing to watch
        try:
            pending.result()
        except Exception:
            late = failed_already() or closed()
            if late is not None:
                raise late from None
            raise
        return
    failure: list[BaseException] = []

    def fail(error: BaseException) -> None:
        failure.append(error)
        pending.cancel()

    token = ops.add(op, name, step, timeout_s, fail, outbound=True)
    try:
        early = failed_already()
        if early is not None:
            fail(early)
        pending.result()
    except Exception:
        if failure:
            raise failure[0] from None
        late = closed()
        if late is not None:
            raise late from None
        raise
    finally:
        ops.remove(token)
