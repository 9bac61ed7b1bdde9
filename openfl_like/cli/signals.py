"""SIGTERM/SIGINT as a graceful stop: the first sets an event, a second exits at once.

What systemd, docker, Kubernetes and `fx plan run` send is SIGTERM; an operator's Ctrl-C is
SIGINT. Both ask the long-running command to wind down (its loop watches the event); someone who
insists (a second signal) gets an immediate exit with 128 + the signal's number.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def stop_on_signals(event: threading.Event, *, what: str) -> Iterator[threading.Event]:
    def handler(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if event.is_set():
            sys.stderr.write(f"fx: {name} again: {what} exits now\n")
            os._exit(128 + signum)
        sys.stderr.write(f"fx: {name}: stopping {what} gracefully (again to exit at once)\n")
        event.set()

    if threading.current_thread() is not threading.main_thread():
        yield event  # signals can only be handled in the main thread
        return
    previous = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    try:
        yield event
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
