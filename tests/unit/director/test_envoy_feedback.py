"""Batched feedback: order, gap-free seq, re-sending after errors, continuing the numbering."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from openfl_like.core.errors import UnavailableError
from openfl_like.core.experiments import EventKind, FeedbackItem
from openfl_like.director.envoy_feedback import FeedbackChannel


class Recorder:
    """A director's feedback side: keeps the first copy of each seq, counts calls."""

    def __init__(self, *, held: int = 0, failures: int = 0) -> None:
        self.held: dict[int, FeedbackItem] = {i: FeedbackItem(i, 0.0, EventKind.LOG, "old")
                                              for i in range(1, held + 1)}
        self.failures = failures
        self.batches: list[list[int]] = []
        self.cond = threading.Condition()

    def __call__(self, experiment: str, items: Sequence[FeedbackItem]) -> int:
        with self.cond:
            if items and self.failures:
                self.failures -= 1
                self.batches.append([-1])
                raise UnavailableError("down")
            self.batches.append([i.seq for i in items])
            for item in items:
                self.held.setdefault(item.seq, item)
            self.cond.notify_all()
            return max(self.held, default=0)


def test_items_arrive_in_order_with_gap_free_seq_in_few_batches() -> None:
    recorder = Recorder()
    channel = FeedbackChannel("exp", recorder, clock=lambda: 42.0, batch_items=50,
                              batch_seconds=5.0)
    for n in range(120):
        channel.log_line(f"line {n}")
    channel.metrics(3, "train", {"loss": 0.5})
    channel.close()
    items = [recorder.held[k] for k in sorted(recorder.held)]
    assert [i.seq for i in items] == list(range(1, 122))
    assert [i.text for i in items[:120]] == [f"line {n}" for n in range(120)]
    assert items[-1].kind is EventKind.METRICS and items[-1].scalars == {"loss": 0.5}
    assert items[-1].round_number == 3 and items[0].time == 42.0
    sent = [b for b in recorder.batches if b]
    assert all(len(b) <= 50 for b in sent) and len(sent) <= 4  # batched at 50, not one by one
    assert recorder.batches[0] == []  # the probe for the director's last seq came first
    assert channel.dropped == 0 and channel.acknowledged == 121


def test_a_batch_is_flushed_after_batch_seconds_without_waiting_for_50() -> None:
    recorder = Recorder()
    channel = FeedbackChannel("exp", recorder, batch_seconds=0.05)
    channel.log_line("alone")
    with recorder.cond:
        assert recorder.cond.wait_for(lambda: 1 in recorder.held, timeout=5)
    channel.close()


def test_unacknowledged_items_are_sent_again_after_errors() -> None:
    recorder = Recorder(failures=2)
    channel = FeedbackChannel("exp", recorder, batch_seconds=0.01, initial_backoff=0.01)
    for n in range(5):
        channel.log_line(f"l{n}")
    with recorder.cond:
        assert recorder.cond.wait_for(lambda: len(recorder.held) == 5, timeout=5)
    channel.log_line("after")
    channel.close()
    assert [recorder.held[k].text for k in sorted(recorder.held)] == [
        "l0", "l1", "l2", "l3", "l4", "after"]
    assert sorted(recorder.held) == list(range(1, 7))
    assert recorder.batches.count([-1]) == 2


def test_numbering_continues_after_what_the_director_already_holds() -> None:
    recorder = Recorder(held=7)  # e.g. an earlier run of this experiment at this envoy
    channel = FeedbackChannel("exp", recorder)
    channel.log_line("new")
    channel.close()
    assert recorder.held[8].text == "new" and recorder.held[7].text == "old"


def test_close_gives_up_when_the_director_stays_away() -> None:
    recorder = Recorder(failures=1000)
    channel = FeedbackChannel("exp", recorder, initial_backoff=0.01)
    channel.log_line("lost")
    channel.close(timeout=5)
    assert channel.dropped == 1
