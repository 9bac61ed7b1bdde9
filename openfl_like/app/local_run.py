"""`fx plan run`: a whole federation on this host, one process per participant, mutual TLS.

It makes the PKI and certificates the plan lacks, starts the aggregator and every collaborator of
cols.yaml as separate `fx` processes on 127.0.0.1, follows the aggregator's status file for
progress, and collects the outputs. Every process it started is gone when it returns, also when
it is told to stop by SIGTERM, SIGHUP or SIGINT (``handle_signals``): it then sends SIGTERM to
each child's process group, waits ``stop_grace`` seconds and SIGKILLs what is left.

Before it starts anything it holds the aggregator's lock of the workspace while it looks at (and
maybe clears) the previous run: it refuses while a live aggregator serves that workspace, and it
refuses to discard an unfinished run unless told ``fresh`` (or ``resume`` to continue it).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from openfl_like.app.common import Workspace
from openfl_like.app.locks import LockHeldError, aggregator_lock
from openfl_like.app.logfiles import LOG_FILE_ENV
from openfl_like.app.round_feed import with_rounds
from openfl_like.app.signals import TERMINATING_SIGNALS, SignalStop, StoppedBySignal
from openfl_like.app.workspace import PkiReport, ensure_pki
from openfl_like.core.errors import ConfigError, FederationError
from openfl_like.core.logging import get_logger
from openfl_like.federation.outputs import METRICS_JSON
from openfl_like.federation.state import STATE_FILE
from openfl_like.pki import PkiStore
from openfl_like.plan.load import load_plan
from openfl_like.plan.schema import Plan

log = get_logger(__name__)

POLL_SECONDS = 0.2  # how often the launcher reads the status file (progress display only)
START_TIMEOUT_SECONDS = 120.0
STOP_GRACE_SECONDS = 10.0  # SIGTERM to SIGKILL: children stop gracefully well within it
COLLABORATOR_EXIT_SECONDS = 15.0  # after the aggregator ended, for the collaborators to leave


@dataclass
class LocalRunResult:
    plan: Plan
    workspace: Workspace
    pki: PkiReport
    final_metrics: dict[str, Any]
    history: list[dict[str, Any]]
    seconds: float
    collaborator_exit_codes: dict[str, int] = field(default_factory=dict)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def fx_command() -> list[str]:
    return [sys.executable, "-m", "openfl_like.cli.main"]


@dataclass
class _Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]

    def tail(self, lines: int = 8) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace").strip().splitlines()
            return "\n".join(text[-lines:])
        return ""


class _Children:
    """Processes started by the launcher; all of them are ended on exit, whatever happens."""

    def __init__(self, logs_dir: Path) -> None:
        self.logs_dir = logs_dir
        self.items: list[_Child] = []

    def start(self, name: str, argv: Sequence[str], env: dict[str, str]) -> _Child:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.logs_dir / f"{name}.log"
        handle = open(log_path, "wb")  # noqa: SIM115 - closed in close()
        process = subprocess.Popen(
            list(argv), stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, start_new_session=True,
        )
        child = _Child(name, process, log_path, handle)
        self.items.append(child)
        return child

    def close(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM every live child's group, SIGKILL whatever is left after ``grace`` s."""
        for child in self.items:
            if child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in self.items:
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s of SIGTERM: killing it", child.name,
                            grace)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait()
            child.log_file.close()

    def kill_now(self, _signum: object = None) -> None:
        """SIGKILL every child's group at once (a second signal: no time for grace)."""
        for child in self.items:
            with contextlib.suppress(OSError):
                os.killpg(child.process.pid, signal.SIGKILL)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class SavedRun:
    """The previous run a workspace holds, from its state.json (read tolerantly)."""

    state_path: Path
    readable: bool
    done: bool = False
    failed: str = ""
    round_number: int | None = None

    @property
    def resumable(self) -> bool:
        """Neither done nor failed; an unreadable state counts too (deleting it is the user's
        call, not ours)."""
        return not self.readable or not (self.done or self.failed)

    def describe(self) -> str:
        if not self.readable:
            return f"unreadable {self.state_path.name}"
        at = "" if self.round_number is None else f" at round {self.round_number}"
        if self.failed:
            return f"failed{at}: {self.failed}"
        return f"finished{at}" if self.done else f"unfinished{at}"


def read_saved_run(ws: Workspace) -> SavedRun | None:
    """The run saved in ``ws``, or None when there is no state.json."""
    path = ws.state_dir / STATE_FILE
    if not path.exists():
        return None
    raw = _read_json(path)
    if not isinstance(raw, dict):
        return SavedRun(path, readable=False)
    number = raw.get("round_number")
    return SavedRun(
        path, readable=True, done=bool(raw.get("done")), failed=str(raw.get("failed") or ""),
        round_number=number if isinstance(number, int) else None,
    )


def _previous_run_paths(ws: Workspace) -> list[Path]:
    return [p for p in (ws.state_dir, ws.output_dir, ws.status_path) if p.exists()]


def _clear_previous_run(ws: Workspace) -> None:
    for path in (ws.state_dir, ws.output_dir):
        if path.exists():
            shutil.rmtree(path)
    with contextlib.suppress(FileNotFoundError):
        ws.status_path.unlink()


def _check_modes(*, resume: bool, fresh: bool) -> None:
    if resume and fresh:
        raise ConfigError("--resume and --fresh exclude each other: continue the saved run, "
                          "or delete it, not both")


def prepare_workspace(ws: Workspace, *, resume: bool = False, fresh: bool = False) -> None:
    """Keep (``resume``) or clear the previous run of ``ws``, holding the aggregator's lock.

    Refuses while a live aggregator holds that lock, and refuses to discard an unfinished run
    unless ``fresh``: both would destroy work nobody asked to destroy.
    """
    _check_modes(resume=resume, fresh=fresh)
    try:
        lock = aggregator_lock(ws).acquire()
    except LockHeldError as exc:
        raise FederationError(
            f"an aggregator (pid {exc.holder}) is running on workspace {ws.root}; "
            f"stop it first (or choose another --workspace)"
        ) from None
    try:
        if resume:
            with contextlib.suppress(FileNotFoundError):
                ws.status_path.unlink()
            return
        saved = read_saved_run(ws)
        paths = _previous_run_paths(ws)
        if saved is not None and saved.resumable and not fresh:
            raise FederationError(
                f"workspace {ws.root} holds a resumable run ({saved.describe()}); "
                f"--resume continues it, --fresh deletes it "
                f"({', '.join(str(p) for p in paths)})"
            )
        if paths:
            if saved is None:
                why = "no saved state"
            else:
                why = "--fresh" if saved.resumable else f"previous run {saved.describe()}"
            log.info("clearing the previous run of %s (%s): %s", ws.root, why,
                     ", ".join(p.name for p in paths))
        _clear_previous_run(ws)
    finally:
        lock.release()


def run_plan_locally(
    plan_dir: str | Path,
    *,
    pki: PkiStore,
    workspace: str | Path | None = None,
    port: int | None = None,
    resume: bool = False,
    fresh: bool = False,
    log_level: str = "INFO",
    on_status: Callable[[dict[str, Any]], None] | None = None,
    timeout: float | None = None,
    handle_signals: bool = False,
    stop_grace: float = STOP_GRACE_SECONDS,
    on_round: Callable[[dict[str, Any]], None] | None = None,
) -> LocalRunResult:
    """Run ``plan_dir`` on this host and return its final metrics and per-round history.

    ``on_status`` gets each status the aggregator writes (a progress display); ``on_round``
    each closed round's record, once and in order (a plain line per round).

    ``handle_signals`` (main thread only): SIGTERM/SIGHUP/SIGINT stop every child and raise
    ``StoppedBySignal``; a second signal SIGKILLs them and exits at once.
    """
    _check_modes(resume=resume, fresh=fresh)
    started = time.monotonic()
    plan = load_plan(plan_dir)
    ws = Workspace.for_plan(plan, workspace)
    children = _Children(ws.logs_dir)
    signals = TERMINATING_SIGNALS if handle_signals else ()
    try:
        with SignalStop(signals, on_stop=_log_stop, on_second=children.kill_now) as stop:
            report = ensure_pki(pki, aggregator=plan.aggregator.name,
                                collaborators=plan.collaborators)
            stop.raise_if_stopped()
            prepare_workspace(ws, resume=resume, fresh=fresh)
            stop.raise_if_stopped()
            try:
                codes = _run_children(plan, plan_dir, pki, ws, children, stop, port=port,
                                      log_level=log_level, timeout=timeout,
                                      on_status=with_rounds(on_status, on_round,
                                                            ws.output_dir / METRICS_JSON))
            finally:
                children.close(stop_grace)
    except StoppedBySignal as exc:
        raise StoppedBySignal(exc.signum, (
            f"stopped by {exc.signum.name}: every process of the federation is stopped; "
            f"`fx plan run --resume` with the same plan and options continues it from {ws.root}"
        )) from None
    final = _read_json(ws.final_metrics_path) or {}
    history = _read_json(ws.output_dir / METRICS_JSON) or []
    return LocalRunResult(plan=plan, workspace=ws, pki=report, final_metrics=final,
                          history=history, seconds=time.monotonic() - started,
                          collaborator_exit_codes=codes)


def _log_stop(signum: signal.Signals) -> None:
    log.warning("%s received: stopping the aggregator and the collaborators "
                "(a second signal kills them at once)", signum.name)


def _run_children(
    plan: Plan, plan_dir: str | Path, pki: PkiStore, ws: Workspace, children: _Children,
    stop: SignalStop, *, port: int | None, log_level: str,
    on_status: Callable[[dict[str, Any]], None] | None, timeout: float | None,
) -> dict[str, int]:
    """Start the aggregator and the collaborators and follow them until the aggregator ends."""
    plan_path = str(Path(plan_dir).resolve())
    chosen_port = plan.aggregator.port if port is None else port
    if chosen_port == 0:
        chosen_port = free_port(plan.aggregator.host)
    address = f"{plan.aggregator.host}:{chosen_port}"
    common = ["--pki-dir", str(pki.root.resolve()), "--workspace", str(ws.root)]
    base = [*fx_command(), "--log-level", log_level]
    env = dict(os.environ)
    env[LOG_FILE_ENV] = "off"  # their whole output is captured into logs/ already
    aggregator = children.start(
        "aggregator",
        [*base, "aggregator", "start", "-p", plan_path, *common, "--port", str(chosen_port)],
        env,
    )
    # Everyone starts at once: the collaborators' start-up (imports, data) overlaps the
    # aggregator's, and their first call is retried with backoff until it listens.
    collaborators: dict[str, _Child] = {}
    for name in plan.collaborators:
        stop.raise_if_stopped()
        collaborators[name] = children.start(
            name,
            [*base, "collaborator", "start", "-n", name, "-p", plan_path, *common,
             "--aggregator", address],
            env,
        )
    _wait_for_start(aggregator, ws, stop)
    log.info("aggregator is up on %s with %d collaborators starting (pids: aggregator %d, %s)",
             address, len(collaborators), aggregator.process.pid,
             ", ".join(f"{n} {c.process.pid}" for n, c in collaborators.items()))
    end = None if timeout is None else time.monotonic() + timeout
    while aggregator.process.poll() is None:
        status = _read_json(ws.status_path)
        if on_status is not None and isinstance(status, dict):
            on_status(status)
        if all(c.process.poll() not in (None, 0) for c in collaborators.values()):
            details = "; ".join(f"{n}: {c.tail(1)}" for n, c in collaborators.items())
            raise FederationError(f"every collaborator failed ({details})")
        if end is not None and time.monotonic() > end:
            raise FederationError(f"federation not finished after {timeout} s")
        stop.wait(POLL_SECONDS)
        stop.raise_if_stopped()
    status = _read_json(ws.status_path)
    if on_status is not None and isinstance(status, dict):
        on_status(status)
    if aggregator.process.returncode != 0:
        raise FederationError(
            f"the aggregator failed (exit {aggregator.process.returncode}); "
            f"last log lines:\n{aggregator.tail()}"
        )
    codes: dict[str, int] = {}
    leave_by = time.monotonic() + COLLABORATOR_EXIT_SECONDS
    for name, child in collaborators.items():
        while child.process.poll() is None and time.monotonic() < leave_by:
            stop.wait(POLL_SECONDS / 4)
            stop.raise_if_stopped()
        code = child.process.poll()
        if code is None:
            log.warning("%s did not exit after the federation ended", name)
        codes[name] = -1 if code is None else code
    return codes


def _wait_for_start(child: _Child, ws: Workspace, stop: SignalStop) -> None:
    """Until the aggregator has written its status (it listens by then) or has died."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        stop.raise_if_stopped()
        if child.process.poll() is not None:
            raise FederationError(
                f"the aggregator did not start (exit {child.process.returncode}): {child.tail(3)}"
            )
        if ws.status_path.exists():
            return
        stop.wait(0.05)
    raise FederationError(f"the aggregator did not start within {START_TIMEOUT_SECONDS:.0f} s")
