"""The collaborator subprocess an envoy runs for one experiment, and the pipes it reads.

The child gets a pipe's write end as ``--events-fd``: one JSON line per finished task. Its
stdout and stderr share one pipe (so their lines keep the order the child wrote them in) and
are read line by line. The child dies with the envoy (``core.parent``: Linux
``PR_SET_PDEATHSIG``: SIGTERM, so it still stops gracefully) and runs in its own session, so a
Ctrl-C at the envoy's terminal reaches the envoy only, which then stops its children in order.

``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child ends, so the child must be
started by a thread that lives as long as it does: ``ExperimentRun`` (envoy_experiment.py)
starts it and waits for it from the same thread.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from openfl_like.core.errors import ConfigError
from openfl_like.core.logging import get_logger
from openfl_like.core.parent import child_env

log = get_logger(__name__)

LAST_LINES = 20


@dataclass(frozen=True)
class LaunchSpec:
    """What the collaborator command is built from; ``events_fd`` is the child's pipe end."""

    envoy: str
    experiment: str
    plan_dir: Path
    pki_dir: Path
    data_file: Path
    workspace: Path
    events_fd: int = -1


CommandBuilder = Callable[[LaunchSpec], Sequence[str]]
LineHandler = Callable[[str], None]
EventHandler = Callable[[int, str, Mapping[str, float]], None]


def default_collaborator_command(spec: LaunchSpec) -> list[str]:
    """``fx collaborator start`` of this interpreter, on the envoy's data and certificate."""
    return [
        sys.executable, "-m", "openfl_like.cli.main", "collaborator", "start",
        "-n", spec.envoy, "-p", str(spec.plan_dir), "--pki-dir", str(spec.pki_dir),
        "--data", str(spec.data_file), "--workspace", str(spec.workspace),
        "--events-fd", str(spec.events_fd),
    ]


def failure_description(lines: Sequence[str], code: int) -> str:
    """One line for a failed run: its last error line, else its last line, else the code."""
    for line in reversed(lines):
        if "error" in line.lower():
            return line.strip()[:500]
    if lines:
        return lines[-1].strip()[:500]
    if code < 0:
        return f"the collaborator was killed by signal {-code}"
    return f"the collaborator exited with code {code}"


def parse_event(line: str) -> tuple[int, str, dict[str, float]] | None:
    """(round, task, scalars) of one events line, or None when it is not one."""
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    round_number, task, metrics = doc.get("round"), doc.get("task"), doc.get("metrics", {})
    if (isinstance(round_number, bool) or not isinstance(round_number, int)
            or not isinstance(task, str) or not isinstance(metrics, dict)):
        return None
    scalars: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            scalars[str(key)] = float(value)
    if isinstance(doc.get("samples"), int) and not isinstance(doc.get("samples"), bool):
        scalars.setdefault("samples", float(doc["samples"]))
    return round_number, task, scalars


class CollaboratorProcess:
    """One collaborator child: start, read its output and events, stop it, wait for it."""

    def __init__(self, spec: LaunchSpec, command: CommandBuilder, *, on_log: LineHandler,
                 on_event: EventHandler, env: Mapping[str, str] | None = None) -> None:
        self.spec = spec
        self._command = command
        self._on_log = on_log
        self._on_event = on_event
        self._env = dict(env) if env is not None else None
        self.last_lines: collections.deque[str] = collections.deque(maxlen=LAST_LINES)
        self._lines_lock = threading.Lock()
        self._popen: subprocess.Popen[bytes] | None = None
        self._readers: list[threading.Thread] = []
        self._killer: threading.Timer | None = None
        self.terminated = False  # set when we asked it to stop

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    def start(self) -> None:
        """Start the child (call from the thread that will ``wait`` for it)."""
        self.spec.workspace.mkdir(parents=True, exist_ok=True)
        read_fd, write_fd = os.pipe()
        try:
            spec = replace(self.spec, events_fd=write_fd)
            argv = [str(a) for a in self._command(spec)]
            try:
                self._popen = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT, pass_fds=(write_fd,), cwd=spec.workspace,
                    env=child_env(self._env), start_new_session=True,
                )
            except OSError as exc:
                raise ConfigError(f"cannot start the collaborator ({argv[0]}): "
                                  f"{exc.strerror or exc}") from None
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)  # the child holds its copy; EOF comes when it exits
        assert self._popen.stdout is not None
        events = os.fdopen(read_fd, "rb")
        for name, stream, handler in (("output", self._popen.stdout, self._line),
                                      ("events", events, self._event)):
            thread = threading.Thread(target=self._pump, args=(stream, handler), daemon=True,
                                      name=f"{self.spec.experiment}-{name}")
            thread.start()
            self._readers.append(thread)
        log.info("%s: collaborator started (pid %d)", self.spec.experiment, self._popen.pid)

    def wait(self) -> int:
        """The child's exit code (negative: killed by that signal), once every pipe is read."""
        assert self._popen is not None
        code = self._popen.wait()
        if self._killer is not None:
            self._killer.cancel()
        for thread in self._readers:
            thread.join(5.0)
        return code

    def terminate(self, grace: float) -> None:
        """SIGTERM now (a graceful stop), SIGKILL if it still runs after ``grace`` seconds.
        Returns at once; ``wait`` sees the end."""
        popen = self._popen
        if popen is None or popen.poll() is not None:
            return
        self.terminated = True
        with contextlib.suppress(ProcessLookupError):
            popen.send_signal(signal.SIGTERM)
        if self._killer is None:
            self._killer = threading.Timer(grace, self._kill)
            self._killer.daemon = True
            self._killer.start()

    def _kill(self) -> None:
        popen = self._popen
        if popen is not None and popen.poll() is None:
            log.warning("%s: collaborator did not stop in time: killed", self.spec.experiment)
            with contextlib.suppress(ProcessLookupError):
                popen.kill()

    def tail(self) -> list[str]:
        with self._lines_lock:
            return list(self.last_lines)

    # -- readers -------------------------------------------------------------------------------

    def _pump(self, stream: IO[bytes], handler: LineHandler) -> None:
        try:
            for raw in stream:
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                if line:
                    handler(line)
        except (OSError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                stream.close()

    def _line(self, line: str) -> None:
        with self._lines_lock:
            self.last_lines.append(line)
        self._on_log(line)

    def _event(self, line: str) -> None:
        parsed = parse_event(line)
        if parsed is None:
            log.warning("%s: ignored a malformed task event: %.200s", self.spec.experiment, line)
            return
        self._on_event(*parsed)
