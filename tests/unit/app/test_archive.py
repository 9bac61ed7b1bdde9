"""A finished run is recognised only once its exports exist; --fresh moves, never deletes."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from openfl_like.app.archive import archive_previous_run, finished_run
from openfl_like.app.common import Workspace


def _run(root: Path, *, done: bool, final: bool, failed: str = "") -> Workspace:
    ws = Workspace(root)
    ws.state_dir.mkdir(parents=True)
    (ws.state_dir / "state.json").write_text(
        json.dumps({"round_number": 4, "done": done, "failed": failed}))
    if final:
        ws.output_dir.mkdir()
        ws.final_metrics_path.write_text(json.dumps({"rounds": 4, "test_accuracy": 0.91234}))
    ws.status_path.write_text("{}")
    return ws


def test_finished_needs_done_state_and_final_metrics(tmp_path):
    assert finished_run(Workspace(tmp_path / "empty")) is None
    assert finished_run(_run(tmp_path / "a", done=False, final=False)) is None
    assert finished_run(_run(tmp_path / "b", done=True, final=False)) is None  # resumed
    assert finished_run(_run(tmp_path / "c", done=True, final=True, failed="x")) is None
    found = finished_run(_run(tmp_path / "d", done=True, final=True))
    assert found is not None and found.round_number == 4
    assert found.describe("fed") == ("federation fed already finished at round 4 "
                                     "(final test accuracy 0.9123)")


def test_archive_moves_state_outputs_and_status(tmp_path):
    # Prepare
    ws = _run(tmp_path / "ws", done=True, final=True)
    ws.logs_dir.mkdir()
    moment = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
    # Execute
    first = archive_previous_run(ws, now=moment)
    _run(tmp_path / "ws2", done=True, final=True)  # unrelated workspace stays untouched
    ws.state_dir.mkdir()
    (ws.state_dir / "state.json").write_text("{}")
    second = archive_previous_run(ws, now=moment)
    # Assert
    assert first == ws.root / "archive" / "20240506T070809Z"
    assert second == ws.root / "archive" / "20240506T070809Z-2"
    assert json.loads((first / "outputs" / "final_metrics.json").read_text())["rounds"] == 4
    assert (first / "state" / "state.json").exists() and (first / "status.json").exists()
    assert (second / "state" / "state.json").read_text() == "{}"
    assert not ws.state_dir.exists() and not ws.output_dir.exists()
    assert ws.logs_dir.is_dir()  # logs stay
    assert archive_previous_run(ws) is None  # nothing left to move
