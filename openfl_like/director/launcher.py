"""Start and stop an experiment's aggregator as a child process, and follow what it says.

The child is ``python -m openfl_like.cli.main aggregator start ... --events-fd N``: its output
lines and its events (JSON lines on the inherited pipe ``N``: listening, each round, final) are
read by two threads that block on reads, and a third blocks on ``wait()``; none polls. The
callbacks run on those threads, in order per stream; ``on_exit`` runs after both streams have
been read to their end, so every event precedes the exit.

The child dies with the director (``core.parent``: ``FX_PARENT_PID``, then
``prctl(PR_SET_PDEATHSIG, SIGTERM)`` in the child), so a director killed with ``kill -9`` leaves
no orphan aggregator; SIGTERM makes the aggregator save its state, and the restarted director
relaunches it, resuming. The signal follows the *thread* that started the child, so launch from
a long-lived thread (the director's scheduler thread does).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from openfl_like.core.logging import get_logger
from openfl_like.core.parent import child_env

log = get_logger(__name__)

LAST_LINES = 20
STOP_GRACE_SECONDS = 15.0


@dataclass(frozen=True)
class LaunchSpec:
    experiment: str
    plan_dir: Path
    workspace: Path
    port: int
    pki_dir: Path


@dataclass(frozen=True)
class LaunchCallbacks:
    on_line: Callable[[str], None]  # one output line of the aggregator
    on_event: Callable[[Mapping[str, Any]], None]  # one decoded event
    on_exit: Callable[[int, tuple[str, ...]], None]  # exit code, last output lines


class AggregatorHandle(Protocol):
    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM (the aggregator saves its state), SIGKILL after ``grace``; returns at exit."""
        ...

    def running(self) -> bool: ...


class Launcher(Protocol):
    def launch(self, spec: LaunchSpec, callbacks: LaunchCallbacks) -> AggregatorHandle: ...


def aggregator_command(spec: LaunchSpec, events_fd: int) -> list[str]:
    return [sys.executable, "-m", "openfl_like.cli.main", "aggregator", "start",
            "-p", str(spec.plan_dir), "--pki-dir", str(spec.pki_dir),
            "--workspace", str(spec.workspace), "--port", str(spec.port),
            "--events-fd", str(events_fd)]


@dataclass
class ProcessHandle:
    process: subprocess.Popen[str]
    _done: threading.Event = field(default_factory=threading.Event)

    def running(self) -> bool:
        return not self._done.is_set()

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                log.warning("aggregator pid %d did not stop in %.0f s: killing it",
                            self.process.pid, grace)
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                self.process.wait()
        self._done.wait(grace)  # the exit callback has run (streams drained)


class SubprocessLauncher:
    """Launches ``fx aggregator start`` children; ``env`` overrides the child's environment."""

    def __init__(self, *, env: Mapping[str, str] | None = None) -> None:
        self.env = dict(env) if env is not None else None

    def launch(self, spec: LaunchSpec, callbacks: LaunchCallbacks) -> AggregatorHandle:
        read_fd, write_fd = os.pipe()
        env = child_env(self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        spec.workspace.mkdir(parents=True, exist_ok=True)
        try:
            process = subprocess.Popen(
                aggregator_command(spec, write_fd), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                pass_fds=(write_fd,), env=env, cwd=spec.workspace,
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        handle = ProcessHandle(process)
        last: deque[str] = deque(maxlen=LAST_LINES)
        events = open(read_fd, encoding="utf-8")  # noqa: SIM115 - closed by its reader
        assert process.stdout is not None
        readers = [
            threading.Thread(target=_read_lines, args=(process.stdout, last, callbacks.on_line),
                             name=f"agg-out-{spec.experiment}", daemon=True),
            threading.Thread(target=_read_events, args=(events, callbacks.on_event),
                             name=f"agg-events-{spec.experiment}", daemon=True),
        ]
        for reader in readers:
            reader.start()

        def wait() -> None:
            code = process.wait()
            for reader in readers:
                reader.join()
            try:
                callbacks.on_exit(code, tuple(last))
            except Exception:
                log.exception("the exit callback of %s failed", spec.experiment)
            finally:
                handle._done.set()

        threading.Thread(target=wait, name=f"agg-wait-{spec.experiment}", daemon=True).start()
        log.info("experiment %s: aggregator started (pid %d, port %d)", spec.experiment,
                 process.pid, spec.port)
        return handle


def _read_lines(stream: IO[str], last: deque[str], on_line: Callable[[str], None]) -> None:
    with stream:
        for raw in stream:
            line = raw.rstrip("\n")
            last.append(line)
            try:
                on_line(line)
            except Exception:
                log.exception("the line callback failed")


def _read_events(stream: IO[str], on_event: Callable[[Mapping[str, Any]], None]) -> None:
    with stream:
        for raw in stream:
            try:
                event = json.loads(raw)
            except ValueError:
                log.warning("aggregator event: not JSON: %.200s", raw)
                continue
            if not isinstance(event, dict):
                continue
            try:
                on_event(event)
            except Exception:
                log.exception("the event callback failed")
