"""bench/walkthrough_vertical_netns.sh: docs/vertical.md's two-host run with the CA, the leader
and the follower each in its own network namespace (CSR flow, host names, mutual TLS across a
link), and a follower from another session refused at once. Needs root and `ip netns`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, fx_env
from .test_walkthrough_netns import _netns_usable

pytestmark = pytest.mark.e2e

SCRIPT = REPO / "bench" / "walkthrough_vertical_netns.sh"


@pytest.mark.timeout(300)
def test_the_vertical_walkthrough_across_network_namespaces(tmp_path: Path) -> None:
    reason = _netns_usable()
    if reason:
        pytest.skip(reason)
    # Execute
    result = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path / "hosts")], capture_output=True, text=True,
        env=fx_env(PY=sys.executable), timeout=280, check=False,
    )
    # Assert: every check passed, and nothing of the namespaces is left
    both = result.stdout + result.stderr
    assert result.returncode == 0, both
    assert "vertical walk-through across hosts: SUCCESS" in result.stdout, both
    assert "FAIL" not in result.stdout, both
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    names = [line.split()[0] for line in left.stdout.splitlines() if line.strip()]
    assert not [n for n in names if n.startswith(("fxvca", "fxvshop", "fxvbank"))], names
