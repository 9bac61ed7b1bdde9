"""What `fx plan run` does with a workspace's previous run: keep, clear, or refuse."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from openfl_like.app.common import Workspace
from openfl_like.app.local_run import SavedRun, prepare_workspace, read_saved_run
from openfl_like.app.locks import AGGREGATOR_LOCK, LockHeldError, aggregator_lock
from openfl_like.core.errors import ConfigError, FederationError

pytestmark = pytest.mark.timeout(60)

# Takes the workspace's aggregator lock the way `fx aggregator start` does, says so, and holds
# it until its stdin closes.
HOLD_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
os.ftruncate(fd, 0)
os.write(fd, str(os.getpid()).encode())
print("locked", flush=True)
sys.stdin.read()
"""


def previous_run(root: Path, **state: object) -> Workspace:
    """A workspace as a run leaves it: state.json (with ``state``), outputs, status."""
    ws = Workspace(root)
    ws.state_dir.mkdir(parents=True)
    ws.output_dir.mkdir()
    (ws.output_dir / "metrics.json").write_text("[]")
    ws.status_path.write_text("{}")
    body = {"format": 1, "round_number": 3, "history": [{"round": 0}], "done": False,
            "failed": "", **state}
    (ws.state_dir / "state.json").write_text(json.dumps(body))
    return ws


def still_there(ws: Workspace) -> bool:
    return all(p.exists() for p in (ws.state_dir / "state.json", ws.output_dir / "metrics.json",
                                    ws.status_path))


def cleared(ws: Workspace) -> bool:
    return not any(p.exists() for p in (ws.state_dir, ws.output_dir, ws.status_path))


@pytest.fixture
def lock_holder(tmp_path: Path) -> Iterator[tuple[Workspace, int]]:
    """A live process holding the aggregator lock of a workspace with a finished run."""
    ws = previous_run(tmp_path / "ws", done=True)
    ws.locks_dir.mkdir()
    argv = [sys.executable, "-c", HOLD_LOCK, str(ws.locks_dir / AGGREGATOR_LOCK)]
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
            yield ws, holder.pid
        finally:
            holder.kill()
            holder.wait(10)


# ------------------------------------------------------------------------------ read_saved_run
@pytest.mark.parametrize("state, resumable, described", [
    ({}, True, "unfinished at round 3"),
    ({"done": True}, False, "finished at round 3"),
    ({"failed": "quorum lost"}, False, "failed at round 3: quorum lost"),
    ({"round_number": "x", "done": None, "failed": None}, True, "unfinished"),
])
def test_saved_run_is_read_tolerantly(tmp_path: Path, state: dict[str, object],
                                      resumable: bool, described: str) -> None:
    saved = read_saved_run(previous_run(tmp_path / "ws", **state))
    assert saved is not None
    assert saved.resumable is resumable
    assert saved.describe() == described


def test_unreadable_state_counts_as_resumable(tmp_path: Path) -> None:
    ws = previous_run(tmp_path / "ws")
    (ws.state_dir / "state.json").write_text("{not json")
    saved = read_saved_run(ws)
    assert saved == SavedRun(ws.state_dir / "state.json", readable=False)
    assert saved.resumable and saved.describe() == "unreadable state.json"


def test_no_state_json_is_no_saved_run(tmp_path: Path) -> None:
    assert read_saved_run(Workspace(tmp_path)) is None


# ------------------------------------------------------------------------------ prepare_workspace
def test_unfinished_run_is_refused_and_kept(tmp_path: Path) -> None:
    # Prepare
    ws = previous_run(tmp_path / "ws")

    # Execute
    with pytest.raises(FederationError) as info:
        prepare_workspace(ws)

    # Assert: one line that says what would go and how to continue or discard.
    message = info.value.message
    assert "\n" not in message
    for word in ("unfinished at round 3", "--resume", "--fresh", str(ws.state_dir),
                 str(ws.output_dir), str(ws.status_path)):
        assert word in message
    assert still_there(ws)


def test_fresh_deletes_an_unfinished_run(tmp_path: Path) -> None:
    ws = previous_run(tmp_path / "ws")
    prepare_workspace(ws, fresh=True)
    assert cleared(ws)


@pytest.mark.parametrize("state, why", [({"done": True}, "finished at round 3"),
                                        ({"failed": "boom"}, "failed at round 3: boom")])
def test_finished_or_failed_run_is_cleared_with_a_log_line(
    tmp_path: Path, state: dict[str, object], why: str
) -> None:
    # Prepare: our own handler (the project's root logger may not propagate to caplog's).
    ws = previous_run(tmp_path / "ws", **state)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("openfl_like.app.local_run")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)

    # Execute
    try:
        prepare_workspace(ws)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)

    # Assert
    assert cleared(ws)
    lines = [r.getMessage() for r in records]
    assert any("clearing the previous run" in line and why in line for line in lines), lines


def test_resume_keeps_the_run_and_drops_only_the_stale_status(tmp_path: Path) -> None:
    ws = previous_run(tmp_path / "ws")
    prepare_workspace(ws, resume=True)
    assert (ws.state_dir / "state.json").exists() and (ws.output_dir / "metrics.json").exists()
    assert not ws.status_path.exists()


def test_resume_and_fresh_exclude_each_other(tmp_path: Path) -> None:
    ws = previous_run(tmp_path / "ws")
    with pytest.raises(ConfigError, match="exclude each other"):
        prepare_workspace(ws, resume=True, fresh=True)
    assert still_there(ws)


@pytest.mark.parametrize("mode", [{}, {"fresh": True}, {"resume": True}])
def test_live_aggregator_is_refused_and_nothing_is_touched(
    lock_holder: tuple[Workspace, int], mode: dict[str, bool]
) -> None:
    ws, pid = lock_holder
    with pytest.raises(FederationError) as info:
        prepare_workspace(ws, **mode)
    assert f"pid {pid}" in info.value.message and str(ws.root) in info.value.message
    assert still_there(ws)


def test_the_lock_is_released_after_preparing(tmp_path: Path) -> None:
    # The aggregator child takes the same lock right after: it must be free again.
    ws = previous_run(tmp_path / "ws", done=True)
    prepare_workspace(ws)
    with aggregator_lock(ws), pytest.raises(LockHeldError):
        aggregator_lock(ws).acquire()
