"""The event log's streams: resume from a seq, wake within milliseconds, end when told."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from openfl_like.core.experiments import EventKind, ExperimentEvent, ExperimentKind
from openfl_like.core.waiting import Wakeup
from openfl_like.director.events import PAGE, EventLog
from openfl_like.director.registry import Registry


def _log(tmp_path: Path) -> EventLog:
    registry = Registry(tmp_path)
    registry.add_experiment(name="exp", owner="alice", kind=ExperimentKind.TRAIN, created=0.0,
                            envoys=["a"], package_sha256="", summary={}, text="queued")
    return EventLog(registry)


def test_stream_resumes_from_seq_and_ends_when_final(tmp_path: Path) -> None:
    log = _log(tmp_path)
    for i in range(PAGE + 5):  # more than a page: read from SQLite in pages
        log.append("exp", time=float(i), kind=EventKind.LOG, source="aggregator", text=str(i))
    events = list(log.stream("exp", 3, wakeup=Wakeup(), settled=lambda: 0.0))
    assert [e.seq for e in events] == list(range(3, PAGE + 7))
    assert log.followers("exp") == 0
    log.registry.close()


def test_waiter_is_woken_within_milliseconds_and_cancel_ends_the_stream(tmp_path: Path) -> None:
    # Prepare: a follower that has read everything and parks
    log = _log(tmp_path)
    wakeup = Wakeup()
    got: list[tuple[ExperimentEvent, float]] = []
    parked = threading.Event()

    def follow() -> None:
        for event in log.stream("exp", 2, wakeup=wakeup, settled=lambda: None):
            got.append((event, time.monotonic()))
    thread = threading.Thread(target=follow)
    thread.start()
    deadline = time.monotonic() + 5
    while log.followers("exp") == 0 and time.monotonic() < deadline:
        parked.wait(0.001)
    # Execute
    sent = time.monotonic()
    log.append("exp", time=1.0, kind=EventKind.METRICS, source="aggregator", round_number=0,
               task="train", metrics={"loss": 1.0})
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        parked.wait(0.001)
    wakeup.cancel()
    thread.join(5)
    # Assert
    assert not thread.is_alive(), "a cancelled wakeup must end the stream"
    assert [e.seq for e, _ in got] == [2]
    assert got[0][1] - sent < 0.1
    assert got[0][0].metrics == {"loss": 1.0}
    assert log.followers("exp") == 0
    log.registry.close()


def test_end_of_experiment_wakes_and_ends_the_stream(tmp_path: Path) -> None:
    log = _log(tmp_path)
    final = threading.Event()
    out: list[int] = []
    def settled() -> float | None:
        return 0.0 if final.is_set() else None

    thread = threading.Thread(target=lambda: out.extend(
        e.seq for e in log.stream("exp", 1, wakeup=Wakeup(), settled=settled)))
    thread.start()
    deadline = time.monotonic() + 5
    while log.followers("exp") == 0 and time.monotonic() < deadline:
        final.wait(0.001)
    log.append("exp", time=2.0, kind=EventKind.STATUS, source="director", text="finished")
    final.set()
    log.wake("exp")
    thread.join(5)
    assert not thread.is_alive() and out == [1, 2]
    log.registry.close()


def test_a_settling_experiment_waits_for_late_lines_then_ends_by_itself(tmp_path: Path) -> None:
    """Ended, but an envoy's last feedback may trail: the stream waits up to the grace
    ``settled`` gives, takes what arrives meanwhile, and ends without any further wake-up."""
    log = _log(tmp_path)
    log.append("exp", time=1.0, kind=EventKind.STATUS, source="director", text="finished")
    deadline = time.monotonic() + 0.6
    out: list[str] = []

    def settled() -> float:
        return max(0.0, deadline - time.monotonic())

    thread = threading.Thread(target=lambda: out.extend(
        e.source for e in log.stream("exp", 1, wakeup=Wakeup(), settled=settled)))
    thread.start()
    time.sleep(0.2)
    log.append("exp", time=2.0, kind=EventKind.LOG, source="env_a", text="late line")
    thread.join(5)
    assert not thread.is_alive()
    assert out == ["director", "director", "env_a"]  # queued, finished, the late line
    assert time.monotonic() >= deadline - 0.05
    log.registry.close()
