"""Terminating signals as a stop request: the first asks for a graceful stop, a second exits now.

``SignalStop`` is a context manager for the long-running entry points (`fx plan run`, the
collaborator, the aggregator). Inside it, SIGTERM, SIGHUP and SIGINT no longer kill the process
(or raise KeyboardInterrupt at an arbitrary line); the first one sets ``event`` and runs
``on_stop`` in a helper thread, so the code decides where to stop: between two tasks, after a
child is started and recorded, never half-way through a write. A second signal means "now": it
runs ``on_second`` (e.g. SIGKILL the children) and calls ``os._exit(128 + signum)``. The previous
handlers are restored on exit.

Where stopping at once loses nothing (a long-poll, a handshake retrying with backoff), the main
thread may open ``interruptible()``: a stop request inside it raises ``StoppedBySignal`` there and
then, like KeyboardInterrupt, instead of waiting for the call to return.

Why a pipe and a thread: a Python signal handler runs in the main thread between two bytecodes,
possibly while that thread holds the very lock ``Event.set`` or ``Thread.start`` would take.
The handler therefore only writes one byte to a pipe (lock-free); the watcher thread reads it and
does everything else.

``StoppedBySignal`` is what callers raise once they have stopped; the CLI turns it into one line
and an exit code (128 + signum by default). Typical use, e.g. for a server::

    with SignalStop(on_stop=lambda sig: server.stop()) as stop:
        server.run()            # returns once on_stop has stopped it
        stop.raise_if_stopped() # tell the caller it was a signal, not the normal end
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from types import FrameType, TracebackType
from typing import Any

from openfl_like.core.errors import ConfigError, OpenflLikeError
from openfl_like.core.logging import get_logger

log = get_logger(__name__)

TERMINATING_SIGNALS: tuple[signal.Signals, ...] = (
    signal.SIGTERM, signal.SIGHUP, signal.SIGINT,
)

_Handler = Callable[[int, FrameType | None], Any] | int | None


class StoppedBySignal(OpenflLikeError):
    """The work was stopped on request (a terminating signal); ``signum`` says which."""

    code = "stopped"

    def __init__(self, signum: int, message: str = "") -> None:
        self.signum = signal.Signals(signum)
        super().__init__(message or f"stopped by {self.signum.name}")
        self.exit_code = 128 + int(self.signum)


class SignalStop:
    """Turns ``signals`` into a stop request while the context is open (module docstring).

    ``signals=()`` installs nothing, so callers can use one code path with handling off.
    """

    def __init__(
        self,
        signals: Iterable[signal.Signals] = TERMINATING_SIGNALS,
        *,
        on_stop: Callable[[signal.Signals], None] | None = None,
        on_second: Callable[[signal.Signals], None] | None = None,
        exit_now: Callable[[int], Any] = os._exit,
    ) -> None:
        self.signals = tuple(signals)
        self.event = threading.Event()
        self.signum: signal.Signals | None = None
        self._on_stop = on_stop
        self._on_second = on_second
        self._exit_now = exit_now
        self._previous: dict[signal.Signals, _Handler] = {}
        self._pipe: tuple[int, int] | None = None
        self._watcher: threading.Thread | None = None
        self._received = 0
        self._interruptible = 0  # depth of interruptible() in the main thread

    # -- what callers use ----------------------------------------------------------------------

    @property
    def stopped(self) -> bool:
        """True from the moment the handler ran (``event`` follows a moment later)."""
        return self.signum is not None

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` s, waking at once on a stop request; True if stopped."""
        return self.event.wait(timeout)

    def sleep_or_raise(self, seconds: float) -> None:
        """A ``time.sleep`` for backoffs: ends early and raises ``StoppedBySignal`` on a stop."""
        self.raise_if_stopped()
        self.event.wait(seconds)
        self.raise_if_stopped()

    def raise_if_stopped(self, message: str = "") -> None:
        if self.signum is not None:
            raise StoppedBySignal(self.signum, message)

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """Main thread only: a stop request (already made, or made inside) raises here."""
        self._interruptible += 1
        try:
            self.raise_if_stopped()  # the handler ran before the increment
            yield
        finally:
            self._interruptible -= 1

    # -- installation --------------------------------------------------------------------------

    def __enter__(self) -> SignalStop:
        if not self.signals:
            return self
        if threading.current_thread() is not threading.main_thread():
            raise ConfigError("signal handlers can only be installed from the main thread")
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)  # a full pipe must never block the handler
        self._pipe = (read_fd, write_fd)
        self._watcher = threading.Thread(target=self._watch, args=(read_fd,), daemon=True,
                                         name="signal-stop")
        self._watcher.start()
        try:
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._restore()

    def _restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if previous is None else previous)
        self._previous.clear()
        if self._pipe is not None:
            read_fd, write_fd = self._pipe
            with contextlib.suppress(OSError):
                os.write(write_fd, b"\0")  # wakes the watcher to end
            if self._watcher is not None:
                self._watcher.join(timeout=5)
            os.close(write_fd)
            os.close(read_fd)
            self._pipe = None
            self._watcher = None

    # -- the handler and its watcher -----------------------------------------------------------

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        """Main thread, any line: only a counter, a pipe write and (second time) the exit."""
        self._received += 1
        sig = signal.Signals(signum)
        if self._received == 1:
            if self.signum is None:
                self.signum = sig
            if self._pipe is not None:
                with contextlib.suppress(OSError):
                    os.write(self._pipe[1], bytes([int(sig)]))
            if self._interruptible:
                raise StoppedBySignal(sig)
            return
        with contextlib.suppress(OSError):
            os.write(2, f"second {sig.name}: exiting at once\n".encode())
        if self._on_second is not None:
            self._on_second(sig)
        self._exit_now(128 + int(sig))

    def _watch(self, read_fd: int) -> None:
        while True:
            try:
                data = os.read(read_fd, 1)
            except OSError:
                return
            if not data or data == b"\0":
                return
            self.event.set()
            if self._on_stop is not None:
                try:
                    self._on_stop(signal.Signals(data[0]))
                except Exception:  # the stop must not die silently with the watcher
                    log.exception("stopping after %s failed", signal.Signals(data[0]).name)
