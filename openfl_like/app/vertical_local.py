"""Both parties of a vertical plan on this machine (`fx vertical run`): the PKI they need, two
`fx vertical start` processes, their output streamed line by line with a ``[name]`` prefix.

Each party is a real process with its own gRPC server and mutual TLS, exactly as on two hosts;
only the certificates come from one local CA (``ensure_vertical_pki``). The children die with
this process (``core.parent``); a signal here is passed on to them (they stop at a step
boundary and say goodbye to each other). When one party fails, the other is given
``PEER_FAIL_GRACE_S`` to notice (it normally fails at once, naming the peer) and is then
stopped, so a run never hangs on a party whose peer is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from openfl_like.app.local_run import fx_command
from openfl_like.app.logfiles import LOG_FILE_ENV
from openfl_like.app.signals import SignalStop
from openfl_like.app.workspace import ensure_vertical_pki
from openfl_like.core.errors import FederationError
from openfl_like.core.logging import get_logger
from openfl_like.core.parent import child_env
from openfl_like.core.vertical import PartyRole
from openfl_like.pki import PkiStore
from openfl_like.plan.vertical_config import VerticalPlan, split_address

log = get_logger(__name__)

PEER_FAIL_GRACE_S = 10.0
STOP_GRACE_S = 15.0
_ACCURACY = re.compile(r"final test accuracy: (\d+(?:\.\d+)?)")


@dataclass(frozen=True)
class LocalRunResult:
    test_accuracy: float
    seconds: float
    exit_codes: dict[str, int]


@dataclass
class _Party:
    name: str
    process: subprocess.Popen[str]
    pump: threading.Thread
    accuracy: float | None = None
    last_line: str = ""


def _pump(party: _Party, stream: IO[str], echo: Callable[[str], None]) -> None:
    for raw in stream:
        line = raw.rstrip("\n")
        if not line:
            continue
        party.last_line = line
        match = _ACCURACY.search(line)
        if match:
            party.accuracy = float(match.group(1))
        echo(f"[{party.name}] {line}")
    stream.close()


def _signal(party: _Party, sig: signal.Signals) -> None:
    if party.process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(party.process.pid, sig)


def run_both(plan: VerticalPlan, *, pki_dir: Path, fresh: bool = False,
             log_level: str = "INFO", echo: Callable[[str], None] = print) -> LocalRunResult:
    """Run the leader and the follower of ``plan`` as two local processes until both end."""
    hosts = {split_address(p.address)[0] for p in (plan.leader, plan.follower)}
    report = ensure_vertical_pki(PkiStore(pki_dir), parties=(plan.leader.name,
                                                             plan.follower.name), hosts=hosts)
    if report.issued:
        echo(f"issued party certificates in {pki_dir}: {', '.join(report.issued)}")
    env = child_env()
    env.update({"PYTHONUNBUFFERED": "1", LOG_FILE_ENV: "on"})
    began = time.monotonic()
    parties: list[_Party] = []

    def forward(sig: signal.Signals) -> None:
        echo(f"{sig.name} received: stopping both parties (a second signal kills them)")
        for party in parties:
            _signal(party, sig)

    def kill_now(sig: signal.Signals) -> None:
        for party in parties:
            _signal(party, signal.SIGKILL)

    with SignalStop(on_stop=forward, on_second=kill_now) as stop:
        try:
            for role in (PartyRole.LEADER, PartyRole.FOLLOWER):
                argv = [*fx_command(), "--log-level", log_level, "vertical", "start",
                        "--role", role.value, "--plan", str(plan.plan_file),
                        "--pki-dir", str(Path(pki_dir).resolve()),
                        *(["--fresh"] if fresh else [])]
                process = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           text=True, bufsize=1, env=env,
                                           start_new_session=True)
                assert process.stdout is not None
                party = _Party(plan.party(role).name, process, threading.Thread())
                party.pump = threading.Thread(target=_pump, args=(party, process.stdout, echo),
                                              daemon=True, name=f"pump-{party.name}")
                party.pump.start()
                parties.append(party)
            _wait(parties, stop)
        finally:
            for party in parties:
                _signal(party, signal.SIGTERM)
            for party in parties:
                try:
                    party.process.wait(STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    _signal(party, signal.SIGKILL)
                    party.process.wait()
                party.pump.join(5)
    codes = {p.name: int(p.process.returncode) for p in parties}
    stop.raise_if_stopped()
    failed = [p for p in parties if p.process.returncode != 0]
    if failed:
        raise FederationError("; ".join(f"{p.name} failed (exit {p.process.returncode}): "
                                        f"{p.last_line}" for p in failed))
    leader = parties[0]
    if leader.accuracy is None:
        raise FederationError(f"{leader.name} ended without reporting a test accuracy")
    return LocalRunResult(test_accuracy=leader.accuracy, seconds=time.monotonic() - began,
                          exit_codes=codes)


def _wait(parties: list[_Party], stop: SignalStop) -> None:
    """Until both ended; a failed party's peer gets a grace period, then a SIGTERM."""
    failed_at: float | None = None
    while any(p.process.poll() is None for p in parties):
        if failed_at is None and any(p.process.poll() not in (None, 0) for p in parties):
            failed_at = time.monotonic()
        if failed_at is not None and time.monotonic() - failed_at > PEER_FAIL_GRACE_S:
            for party in parties:
                if party.process.poll() is None:
                    log.warning("%s still running %.0f s after its peer failed: stopping it",
                                party.name, PEER_FAIL_GRACE_S)
                    _signal(party, signal.SIGTERM)
            return
        if stop.wait(0.1):  # stopping: the children are ending; no busy loop meanwhile
            time.sleep(0.1)
