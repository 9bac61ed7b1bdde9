"""Two-party vertical learning through the real `fx` CLI, over mutual TLS on 127.0.0.1.

- `fx vertical run` makes the PKI, runs both parties as processes and prints a final test
  accuracy >= 0.9 (the issue's demo).
- A leader killed with SIGKILL after a checkpoint: the follower fails within its operation
  timeout naming the leader; both restarted log the same "resuming from checkpoint v" (v > 0)
  and finish >= 0.9.
- SIGTERM to one party: it exits with one line, and its peer fails at once naming it.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest

from openfl_like.core.ids import Role
from openfl_like.pki import CertificateAuthority, PkiStore

from .conftest import (
    FINAL_ACCURACY,
    FxProcess,
    ProcessRegistry,
    assert_clean_error,
    copy_plan,
    free_port,
    run_fx,
)

pytestmark = pytest.mark.e2e

RESUMING = re.compile(r"resuming from checkpoint (\d+) \(epoch (\d+), sample (\d+)\)")
TIMEOUT_S = 4  # timeouts.default_ms of the restart test


def _plan(tmp_path: Path, **edits: object) -> Path:
    settings: dict[str, object] = {
        "leader.address": f"127.0.0.1:{free_port()}",
        "follower.address": f"127.0.0.1:{free_port()}",
        "model.epochs": 4,
        "timeouts.connect_ms": 60_000,
    }
    settings.update(edits)
    return copy_plan("vertical_digits", tmp_path / "plan", settings)


def _party_pki(root: Path) -> Path:
    ca = CertificateAuthority.init(PkiStore(root))
    for name in ("shop", "bank"):
        ca.certify(name, Role.PARTY, ["localhost", "127.0.0.1"])
    return root


def _start(procs: ProcessRegistry, plan: Path, pki: Path, role: str, label: str) -> FxProcess:
    return procs.start("vertical", "start", "--role", role, "--plan", plan, "--pki-dir", pki,
                       name=label, cwd=plan)


def test_vertical_run_reaches_the_accuracy_and_prints_it(tmp_path: Path) -> None:
    # Prepare
    plan = _plan(tmp_path)
    # Execute
    result = run_fx("vertical", "run", "--plan", plan, "--pki-dir", tmp_path / "pki",
                    cwd=tmp_path, timeout=120)
    # Assert
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    final = re.search(r"vertical run finished in [\d.]+ s: final test accuracy: ([\d.]+)",
                      result.stdout)
    assert final, out
    assert float(final.group(1)) >= 0.9, out
    for name in ("shop", "bank"):
        assert re.search(rf"^\[{name}\] final test accuracy: {final.group(1)}", result.stdout,
                         re.M), out
        assert (plan / "workspace" / name / "model.keras").is_file()
    assert (tmp_path / "pki" / "certs" / "shop.crt").is_file()


def test_restart_after_kill9_resumes_from_the_common_checkpoint(
        tmp_path: Path, procs: ProcessRegistry) -> None:
    # Prepare: short operation timeouts, frequent checkpoints
    plan = _plan(tmp_path, **{"model.epochs": 6, "checkpoint.every_steps": 10,
                              "timeouts.default_ms": TIMEOUT_S * 1000})
    pki = _party_pki(tmp_path / "pki")
    leader = _start(procs, plan, pki, "leader", "leader-1")
    follower = _start(procs, plan, pki, "follower", "follower-1")
    leader.stdout.wait_for(r"^epoch 1/6:", timeout=90)  # 45 steps: checkpoints 10..40 exist
    # Execute: SIGKILL the leader (no goodbye)
    leader.kill9()
    killed_at = time.monotonic()
    code = follower.wait(TIMEOUT_S + 20)
    waited = time.monotonic() - killed_at
    # Assert: the follower failed on its own timeout, naming the operation and the peer
    assert code != 0
    line = assert_clean_error(follower, mentions=("shop",))
    assert re.search(r"timed out|unreachable|gone|shut down", line), line
    assert waited < TIMEOUT_S + 10, f"the follower took {waited:.1f} s to fail: {line}"
    # Execute: both restart
    leader = _start(procs, plan, pki, "leader", "leader-2")
    follower = _start(procs, plan, pki, "follower", "follower-2")
    leader.wait_ok(90)
    follower.wait_ok(30)
    # Assert: the same checkpoint at both, and the demo's accuracy
    resumed = [p.stdout.wait_for(RESUMING, timeout=1).groups() for p in (leader, follower)]
    assert resumed[0] == resumed[1], resumed
    assert int(resumed[0][0]) > 0 and int(resumed[0][0]) % 10 == 0
    accuracy = [float(p.stdout.wait_for(FINAL_ACCURACY, timeout=1).group(1))
                for p in (leader, follower)]
    assert accuracy[0] == accuracy[1] >= 0.9


def test_sigterm_stops_a_party_and_its_peer_fails_at_once_naming_it(
        tmp_path: Path, procs: ProcessRegistry) -> None:
    # Prepare: a long run
    plan = _plan(tmp_path, **{"model.epochs": 200})
    pki = _party_pki(tmp_path / "pki")
    leader = _start(procs, plan, pki, "leader", "leader")
    follower = _start(procs, plan, pki, "follower", "follower")
    follower.stdout.wait_for(r"^epoch 1:", timeout=90)
    # Execute
    follower.signal_group(signal.SIGTERM)
    # Assert
    assert follower.wait(20) == 128 + signal.SIGTERM
    assert "SIGTERM" in assert_clean_error(follower)
    assert leader.wait(10) != 0
    line = assert_clean_error(leader, mentions=("bank",))
    assert "SIGTERM" in line, line
