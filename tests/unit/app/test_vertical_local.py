"""fx vertical run's follow-up of its two children: a failed party's peer is stopped after a
grace period, so the run never hangs on a party whose peer is gone."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from openfl_like.app import vertical_local
from openfl_like.app.signals import SignalStop


def _child(code: str) -> vertical_local._Party:
    process = subprocess.Popen([sys.executable, "-c", code], start_new_session=True,
                               stdout=subprocess.DEVNULL, text=True)
    return vertical_local._Party("p", process, threading.Thread())


def test_the_peer_of_a_failed_party_is_stopped_after_the_grace(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: one child fails at once, the other would run for a minute
    monkeypatch.setattr(vertical_local, "PEER_FAIL_GRACE_S", 0.3)
    failed = _child("raise SystemExit(3)")
    stuck = _child("import time; time.sleep(60)")
    try:
        # Execute
        began = time.monotonic()
        with SignalStop(()) as stop:
            vertical_local._wait([failed, stuck], stop)
        # Assert
        assert stuck.process.wait(5) == -15  # SIGTERM
        assert failed.process.returncode == 3
        assert time.monotonic() - began < 5
    finally:
        for party in (failed, stuck):
            if party.process.poll() is None:
                party.process.kill()
                party.process.wait()


def test_both_ending_well_returns_when_the_last_ends() -> None:
    first, second = _child("pass"), _child("import time; time.sleep(0.3)")
    with SignalStop(()) as stop:
        vertical_local._wait([first, second], stop)
    assert first.process.returncode == 0 and second.process.returncode == 0
