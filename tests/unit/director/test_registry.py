"""Registry: WAL, schema version, durability across a reopen, gap-free event numbering."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from openfl_like.core.errors import ConfigError, NotFoundError
from openfl_like.core.experiments import (
    EventKind,
    ExperimentKind,
    ExperimentState,
    FeedbackItem,
)
from openfl_like.director.registry import ENVOY_FAILED, REGISTRY_FILE, SCHEMA_VERSION, Registry
from tests.unit.director.conftest import shard


def _add(registry: Registry, name: str = "exp1", owner: str = "alice") -> None:
    registry.add_experiment(name=name, owner=owner, kind=ExperimentKind.TRAIN, created=1.0,
                            envoys=["site_a"], package_sha256="ab", summary={"rounds": 1},
                            text="queued")


def test_wal_mode_and_schema_version(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    try:
        assert registry.journal_mode() == "wal"
    finally:
        registry.close()
    with sqlite3.connect(tmp_path / REGISTRY_FILE) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]


def test_writes_survive_a_reopen_in_a_new_object(tmp_path: Path) -> None:
    # Prepare
    first = Registry(tmp_path)
    first.upsert_envoy("site_a", shard(), 10.0)
    _add(first)
    first.update_experiment("exp1", state=ExperimentState.RUNNING, event_time=2.0, port=61000,
                            event_text="running")
    first.set_envoy_state("exp1", "site_a", ENVOY_FAILED, now=3.0, reason="boom",
                          last_lines=["l1", "l2"])
    # Execute: no close(): as after kill -9, the committed transactions are all there is
    second = Registry(tmp_path)
    try:
        # Assert
        record = second.experiment("exp1")
        assert record.state is ExperimentState.RUNNING and record.port == 61000
        assert record.envoys == ("site_a",) and record.summary == {"rounds": 1}
        assert [e.text for e in second.events("exp1", 1, 10)] == ["queued", "running"]
        assert second.envoys()[0].shard.sample_counts == {"train": 80, "valid": 20}
        state = second.envoy_states("exp1")["site_a"]
        assert (state.state, state.reason, state.last_lines) == ("failed", "boom", ("l1", "l2"))
    finally:
        second.close()
        first.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    Registry(tmp_path).close()
    with sqlite3.connect(tmp_path / REGISTRY_FILE) as db:
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(ConfigError, match=r"schema version 2 is newer than this director"):
        Registry(tmp_path)


def test_names_are_unique_and_unknown_is_not_found(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    try:
        _add(registry)
        with pytest.raises(ConfigError, match="already exists"):
            _add(registry, owner="bob")
        with pytest.raises(NotFoundError):
            registry.experiment("nope")
    finally:
        registry.close()


def test_event_seq_is_gap_free_and_feedback_is_not_stored_twice(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    try:
        _add(registry)  # seq 1: queued
        registry.append_event("exp1", time=2.0, kind=EventKind.LOG, source="aggregator",
                              text="hello")
        items = [FeedbackItem(seq=s, time=3.0, kind=EventKind.LOG, text=f"line {s}")
                 for s in (1, 2, 3)]
        last, new = registry.store_feedback("exp1", "site_a", items, text_limit=100)
        assert last == 3 and len(new) == 3
        # a batch re-sent after a broken stream: only the unseen item is stored
        again = [*items, FeedbackItem(seq=4, time=4.0, kind=EventKind.METRICS, round_number=1,
                                      task="train", scalars={"loss": 0.5})]
        last, new = registry.store_feedback("exp1", "site_a", again, text_limit=100)
        assert last == 4 and [e.seq for e in new] == [6]
        events = registry.events("exp1", 1, 100)
        assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
        assert events[-1].metrics == {"loss": 0.5} and events[-1].source == "site_a"
        assert [e.seq for e in registry.events("exp1", 5, 100)] == [5, 6]
    finally:
        registry.close()
