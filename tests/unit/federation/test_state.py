"""The snapshot encoder: history records are encoded once, and the file still says it all."""

from __future__ import annotations

import json
from pathlib import Path

from openfl_like.core.messages import ResultKey
from openfl_like.federation.state import AggregatorState, ResultRecord, StateStore


def test_snapshot_round_trips_while_history_grows_and_is_replaced(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    state = AggregatorState(plan_digest="d", federation_uuid="u")
    for r in range(3):
        state.history.append({"round": r, "metrics": {"train": {"loss": 1.0 / (r + 1)}}})
        state.round_number = r + 1
        store.save(state)
        # The file is plain JSON with the same content as to_json() (plus its checksum),
        # whatever was cached.
        saved = json.loads(store.state_path.read_text())
        assert len(saved.pop("sha256")) == 64
        assert saved == json.loads(json.dumps(state.to_json()))
    # A history that is not an extension of the cached one (e.g. rebuilt) is encoded afresh.
    state.history = [{"round": 9}]
    store.save(state)
    loaded = store.load()
    assert loaded.history == [{"round": 9}] and loaded.round_number == 3


def test_journal_line_keeps_the_staged_layout(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    layout = {"w": {"dtype": "<f4", "shape": [2, 3], "offset": 0}}
    store.save(AggregatorState(plan_digest="d", federation_uuid="u"))
    store.append(0, ResultRecord(ResultKey("col1", 0, "train"), 5, {"loss": 1.0}, "s.bin",
                                 layout))
    store.append(0, ResultRecord(ResultKey("col1", 0, "v"), 5, {"acc": 1.0}))
    first, second = store.load().results
    assert first.layout == layout and first.staged_entries()["w"].shape == (2, 3)
    assert second.layout is None and second.staged_entries() is None
