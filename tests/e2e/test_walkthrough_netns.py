"""bench/walkthrough_netns.sh: the README's multi-host walk-through with the CA, the aggregator
and two collaborators each in its own network namespace. Needs root and `ip netns`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, fx_env

pytestmark = pytest.mark.e2e

SCRIPT = REPO / "bench" / "walkthrough_netns.sh"


def _netns_usable() -> str:
    """'' when network namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip)"
    probe = f"fxprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, check=False)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.decode(errors='replace').strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return ""


@pytest.mark.timeout(420)
def test_the_walkthrough_across_network_namespaces(tmp_path: Path) -> None:
    reason = _netns_usable()
    if reason:
        pytest.skip(reason)
    # Execute
    result = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path / "hosts")], capture_output=True, text=True,
        env=fx_env(PY=sys.executable, PLAN="numpy_digits"), timeout=400, check=False,
    )
    # Assert: every check passed, and nothing of the namespaces is left
    both = result.stdout + result.stderr
    assert result.returncode == 0, both
    assert "walk-through across hosts: SUCCESS" in result.stdout, both
    assert "FAIL" not in result.stdout, both
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    names = [line.split()[0] for line in left.stdout.splitlines() if line.strip()]
    assert not [n for n in names if n.startswith(("fxca", "fxagg", "fxcol"))], names
