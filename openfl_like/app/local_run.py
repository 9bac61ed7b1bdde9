"""`fx plan run`: a whole federation on this host, one process per participant, mutual TLS.

It makes the PKI and certificates the plan lacks, starts the aggregator and every collaborator of
cols.yaml as separate `fx` processes on 127.0.0.1, follows the aggregator's status file for
progress, and collects the outputs. Every process it started is gone when it returns.
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
from openfl_like.app.workspace import PkiReport, ensure_pki
from openfl_like.core.errors import FederationError
from openfl_like.core.logging import get_logger
from openfl_like.federation.outputs import METRICS_JSON
from openfl_like.pki import PkiStore
from openfl_like.plan.load import load_plan
from openfl_like.plan.schema import Plan

log = get_logger(__name__)

POLL_SECONDS = 0.2  # how often the launcher reads the status file (progress display only)
START_TIMEOUT_SECONDS = 120.0


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

    def close(self) -> None:
        for child in self.items:
            if child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for child in self.items:
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait()
            child.log_file.close()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _clear_previous_run(ws: Workspace) -> None:
    for path in (ws.state_dir, ws.output_dir):
        if path.exists():
            shutil.rmtree(path)
    with contextlib.suppress(FileNotFoundError):
        ws.status_path.unlink()


def run_plan_locally(
    plan_dir: str | Path,
    *,
    pki: PkiStore,
    workspace: str | Path | None = None,
    port: int | None = None,
    resume: bool = False,
    log_level: str = "INFO",
    on_status: Callable[[dict[str, Any]], None] | None = None,
    timeout: float | None = None,
) -> LocalRunResult:
    """Run ``plan_dir`` on this host and return its final metrics and per-round history."""
    started = time.monotonic()
    plan = load_plan(plan_dir)
    plan_path = str(Path(plan_dir).resolve())
    ws = Workspace.for_plan(plan, workspace)
    report = ensure_pki(pki, aggregator=plan.aggregator.name, collaborators=plan.collaborators)
    if not resume:
        _clear_previous_run(ws)
    else:
        with contextlib.suppress(FileNotFoundError):
            ws.status_path.unlink()
    chosen_port = plan.aggregator.port if port is None else port
    if chosen_port == 0:
        chosen_port = free_port(plan.aggregator.host)
    address = f"{plan.aggregator.host}:{chosen_port}"
    common = ["--pki-dir", str(pki.root.resolve()), "--workspace", str(ws.root)]
    base = [*fx_command(), "--log-level", log_level]
    env = dict(os.environ)
    children = _Children(ws.logs_dir)
    try:
        aggregator = children.start(
            "aggregator",
            [*base, "aggregator", "start", "-p", plan_path, *common, "--port", str(chosen_port)],
            env,
        )
        # Everyone starts at once: the collaborators' start-up (imports, data) overlaps the
        # aggregator's, and their first call is retried with backoff until it listens.
        collaborators = {
            name: children.start(
                name,
                [*base, "collaborator", "start", "-n", name, "-p", plan_path, *common,
                 "--aggregator", address],
                env,
            )
            for name in plan.collaborators
        }
        _wait_for_start(aggregator, ws)
        log.info("aggregator is up on %s with %d collaborators starting", address,
                 len(collaborators))
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
            time.sleep(POLL_SECONDS)
        status = _read_json(ws.status_path)
        if on_status is not None and isinstance(status, dict):
            on_status(status)
        if aggregator.process.returncode != 0:
            raise FederationError(
                f"the aggregator failed (exit {aggregator.process.returncode}); "
                f"last log lines:\n{aggregator.tail()}"
            )
        codes: dict[str, int] = {}
        for name, child in collaborators.items():
            try:
                codes[name] = child.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                codes[name] = -1
                log.warning("%s did not exit after the federation ended", name)
    finally:
        children.close()
    final = _read_json(ws.final_metrics_path) or {}
    history = _read_json(ws.output_dir / METRICS_JSON) or []
    return LocalRunResult(plan=plan, workspace=ws, pki=report, final_metrics=final,
                          history=history, seconds=time.monotonic() - started,
                          collaborator_exit_codes=codes)


def _wait_for_start(child: _Child, ws: Workspace) -> None:
    """Until the aggregator has written its status (it listens by then) or has died."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise FederationError(
                f"the aggregator did not start (exit {child.process.returncode}): {child.tail(3)}"
            )
        if ws.status_path.exists():
            return
        time.sleep(0.05)
    raise FederationError(f"the aggregator did not start within {START_TIMEOUT_SECONDS:.0f} s")
