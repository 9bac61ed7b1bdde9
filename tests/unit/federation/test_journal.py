"""The open round's journal: a torn last line is a crash (dropped), damage before good lines is
corruption (refused, naming the file and line), and concurrent appends share their fsyncs."""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from openfl_like.core.errors import FederationError
from openfl_like.core.messages import ResultKey
from openfl_like.federation import state as state_module
from openfl_like.federation.state import AggregatorState, ResultRecord, StateStore
from tests.unit.federation.harness import make_plan
from tests.unit.federation.scenario import Script, new_aggregator

JOURNAL = "journal-0.jsonl"


def _three_results(tmp_path: Path) -> Path:
    """A federation in round 0 with three journalled results (col1 train, col2 train, col1
    aggregated_model_validation), stopped; returns the journal's path."""
    plan = make_plan(tmp_path)
    agg = new_aggregator(tmp_path, plan)
    script = Script(plan)
    script.deliver(agg, "col1", 0, ("train",))
    script.deliver(agg, "col2", 0, ("train",))
    script.deliver(agg, "col1", 0, ("aggregated_model_validation",))
    agg.stop()
    journal = tmp_path / "state" / JOURNAL
    assert len(journal.read_bytes().splitlines()) == 3
    return journal


def _cut_mid_line(data: bytes) -> bytes:
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    return data[:last_start + (len(data) - last_start) // 2]


@pytest.mark.parametrize("damage", [
    pytest.param(_cut_mid_line, id="last-line-cut-mid-way"),
    pytest.param(lambda d: d + b'0123abcd {"key": {"collab', id="garbage-without-newline"),
])
def test_torn_last_line_is_dropped_and_earlier_results_are_kept(
        tmp_path: Path, damage: Callable[[bytes], bytes]) -> None:
    # Prepare
    journal = _three_results(tmp_path)
    intact = journal.read_bytes()
    journal.write_bytes(damage(intact))
    kept = journal.read_bytes()[:journal.read_bytes().rfind(b"\n") + 1]
    # Execute
    plan = make_plan(tmp_path)
    resumed = new_aggregator(tmp_path, plan, initial_weights=None)
    try:
        status = resumed.status()
        # Assert: the whole lines before the tear are the results; the file is cut back to them.
        expected = len(kept.splitlines())
        assert status["results_in"] == expected
        assert journal.read_bytes() == kept
        # A result lost with the torn line is asked for again and is not a duplicate.
        if expected == 2:
            pending = status["collaborators"]["col1"]["pending_tasks"]  # type: ignore
            assert "aggregated_model_validation" in pending
            acks = Script(plan).deliver(resumed, "col1", 0, ("aggregated_model_validation",))
            assert acks[0].accepted and not acks[0].duplicate
    finally:
        resumed.stop()


@pytest.mark.parametrize("line", [1, 2])
def test_damaged_line_followed_by_good_lines_refuses_the_resume(tmp_path: Path,
                                                                line: int) -> None:
    # Prepare: one byte of line `line` (of 3) flipped inside its JSON body.
    journal = _three_results(tmp_path)
    lines = journal.read_bytes().splitlines(keepends=True)
    target = bytearray(lines[line - 1])
    target[len(target) // 2] ^= 0x01
    lines[line - 1] = bytes(target)
    journal.write_bytes(b"".join(lines))
    before = journal.read_bytes()
    # Execute / Assert: refused, naming the file and the line; the evidence is left untouched.
    with pytest.raises(FederationError) as caught:
        new_aggregator(tmp_path, make_plan(tmp_path), initial_weights=None)
    message = caught.value.message
    assert str(journal) in message and f"line {line} is damaged" in message
    assert f"{3 - line} line(s) follow it" in message
    assert journal.read_bytes() == before


# ------------------------------------------------------------------------------ group commit
class FsyncCounter:
    """Stands in for os.fsync: counts calls on files and on directories, optionally slow."""

    def __init__(self, delay: float = 0.0) -> None:
        self.real = os.fsync
        self.delay = delay
        self.files = 0
        self.directories = 0
        self._lock = threading.Lock()

    def __call__(self, fd: int) -> None:
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        with self._lock:
            if is_dir:
                self.directories += 1
            else:
                self.files += 1
        self.real(fd)
        if self.delay and not is_dir:
            time.sleep(self.delay)  # a slow disk: appenders pile up behind this sync


def _record(i: int) -> ResultRecord:
    return ResultRecord(ResultKey(f"col{i}", 0, "aggregated_model_validation"), i + 1,
                        {"accuracy": i / 100})


def _store(tmp_path: Path) -> StateStore:
    store = StateStore(tmp_path / "state")
    store.root.mkdir(parents=True)
    store.save(AggregatorState(plan_digest="d", federation_uuid="u"))
    return store


def test_journal_creation_syncs_its_directory(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    store = _store(tmp_path)
    counter = FsyncCounter()
    monkeypatch.setattr(state_module.os, "fsync", counter)
    # Execute: the first append creates the journal; the second finds it.
    store.append(0, _record(0))
    after_create = counter.directories
    store.append(0, _record(1))
    # Assert: the new file's name was made durable once; each durable line one fsync.
    assert after_create == 1 and counter.directories == 1
    assert counter.files == 2
    store.close()


def test_lines_written_before_a_sync_share_one_fsync(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: 16 threads each append a line, wait for all, then each asks for durability.
    store = _store(tmp_path)
    store.append(0, _record(99))  # the journal exists
    counter = FsyncCounter()
    monkeypatch.setattr(state_module.os, "fsync", counter)
    count = 16
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            ticket = store.append(0, _record(i), durable=False)
            barrier.wait(5)
            store.sync(ticket)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    # Execute
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    # Assert: one fsync covered all 16 lines, and every line is there.
    assert not errors
    assert counter.files == 1
    store.close()
    assert sorted(r.data_size for r in store.load().results) == sorted(
        [100, *range(1, count + 1)])


def test_concurrent_durable_appends_all_land_with_fewer_fsyncs_than_lines(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: a slow disk (5 ms per fsync) and 40 appenders that each wait for durability.
    store = _store(tmp_path)
    store.append(0, _record(99))
    counter = FsyncCounter(delay=0.005)
    monkeypatch.setattr(state_module.os, "fsync", counter)
    count = 40
    start = threading.Event()
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            start.wait(5)
            store.append(0, _record(i), durable=True)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    # Execute
    start.set()
    for t in threads:
        t.join(10)
    # Assert: every line whole and readable; the fsyncs were shared.
    assert not errors
    assert 1 <= counter.files < count, counter.files
    store.close()
    results = store.load().results
    assert len(results) == count + 1
    assert sorted(r.key.collaborator for r in results) == sorted(
        ["col99", *(f"col{i}" for i in range(count))])
