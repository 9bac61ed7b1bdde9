"""A child started with ``core.parent.child_env`` dies with its parent, even one killed -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openfl_like.core.parent import PARENT_ENV, die_with_parent_from_env

REPO = Path(__file__).resolve().parents[3]
PARENT = """
import subprocess, sys, time
from openfl_like.core.parent import child_env
child = subprocess.Popen([sys.executable, "-c", CHILD], env=child_env())
print(child.pid, flush=True)
time.sleep(120)
"""
CHILD = ("from openfl_like.core.parent import die_with_parent_from_env; "
         "die_with_parent_from_env(); import time; time.sleep(120)")


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_child_dies_when_its_parent_is_killed() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    parent = subprocess.Popen([sys.executable, "-c", f"CHILD = {CHILD!r}\n{PARENT}"], env=env,
                              stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        time.sleep(0.5)  # the child is past die_with_parent_from_env
        assert not _gone(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while not _gone(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(child), "the child outlived its parent"
    finally:
        parent.stdout.close()
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if not _gone(child):
            os.kill(child, signal.SIGKILL)


def test_a_child_whose_parent_is_already_gone_exits_and_the_variable_is_consumed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    killed: list[int] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: killed.append(sig))
    environ = {PARENT_ENV: str(os.getppid() + 1_000_000)}
    die_with_parent_from_env(environ)
    assert killed == [signal.SIGTERM]
    assert PARENT_ENV not in environ
    die_with_parent_from_env(environ)  # nothing to do the second time
    assert killed == [signal.SIGTERM]
