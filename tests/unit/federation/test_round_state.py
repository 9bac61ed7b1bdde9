"""The round state: when a round closes, for whom it waits, and what a resume keeps of it.

The behavioural tests run twice through the ``build`` fixture: against an aggregator that was
fed its results directly ("in_memory"), and against one rebuilt from its state folder after
those results were journalled ("journal_restored"). Both must behave the same. The last section
checks ``RoundState``'s counters directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from openfl_like.core.messages import ResultKey
from openfl_like.federation import Aggregator
from openfl_like.federation.assigner import make_assigner
from openfl_like.federation.round_state import RoundRules, RoundState, Verdict
from openfl_like.federation.state import ResultRecord
from openfl_like.plan import Plan
from tests.unit.federation.harness import COLS, initial_weights, make_plan
from tests.unit.federation.scenario import (
    EVERYTHING,
    KeepAlive,
    Script,
    new_aggregator,
    stream,
    train_result,
    watch_logs,
)

Before = Sequence[tuple[str, Sequence[str]]]


@dataclass
class Built:
    plan: Plan
    agg: Aggregator
    script: Script


Factory = Callable[..., Built]


@pytest.fixture(params=["in_memory", "journal_restored"])
def build(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    """``build(overrides, before=[(name, tasks), ...])``: an aggregator in round 0 with those
    results in; for "journal_restored" it is stopped after them and rebuilt from its folder."""
    made: list[Aggregator] = []

    def factory(overrides: Mapping[str, Any] | None = None, *, before: Before = (),
                cols: Sequence[str] = COLS) -> Built:
        plan = make_plan(tmp_path, overrides, cols)
        agg = new_aggregator(tmp_path, plan)
        made.append(agg)
        script = Script(plan)
        for name, tasks in before:
            script.deliver(agg, name, 0, tasks)
        if request.param == "journal_restored":
            agg.stop()
            agg = new_aggregator(tmp_path, plan, initial_weights=None)
            made.append(agg)
            assert agg.status()["results_in"] == sum(len(t) for _, t in before)
        return Built(plan, agg, script)

    yield factory
    for agg in made:
        agg.stop()


def _info(agg: Aggregator, name: str) -> dict[str, Any]:
    collaborators: dict[str, dict[str, Any]] = agg.status()["collaborators"]  # type: ignore
    return collaborators[name]


# --------------------------------------------------------------------------------- duplicates
def test_duplicate_is_answered_as_duplicate_and_not_counted(build: Factory) -> None:
    # Prepare
    b = build(before=[("col1", ("train",))])
    # Execute
    again = b.agg.send_local_task_results(train_result("col1", 0), stream(initial_weights()))
    other = b.agg.send_local_task_results(train_result("col2", 0), stream(initial_weights()))
    # Assert: the retry is recognised; a new key next to it is counted.
    assert again.accepted and again.duplicate
    assert other.accepted and not other.duplicate
    assert b.agg.status()["results_in"] == 2


# --------------------------------------------------------------------------------- completion
def test_round_closes_as_complete_once_everyone_delivered(build: Factory) -> None:
    # Prepare
    b = build(before=[("col1", EVERYTHING)])
    # Execute
    b.script.deliver(b.agg, "col2", 0)
    b.script.deliver(b.agg, "col3", 0, EVERYTHING[:2])
    waiting = b.agg.status()["waiting_for"]
    b.script.deliver(b.agg, "col3", 0, EVERYTHING[2:])
    # Assert: one task short, the round waited; with it, the round closed as complete.
    assert waiting == ["col3"]
    assert b.agg.wait_for_round(1)
    record = b.agg.history[0]
    assert record["closed_by"] == "complete"
    assert record["collaborators"] == list(COLS) and record["missing"] == []
    assert "dropped" not in record


# --------------------------------------------------------------------------------- revocation
def test_revoked_participant_is_dropped_and_the_round_closes_all_live(build: Factory) -> None:
    # Prepare: two of three delivered; the round waits for col3.
    b = build(before=[("col1", EVERYTHING)])
    b.script.deliver(b.agg, "col2", 0)
    assert b.agg.status()["waiting_for"] == ["col3"]
    # Execute
    b.agg.mark_revoked(["col3"])
    # Assert: closed at once as all_live, col3 named as dropped; later rounds do not expect it,
    # and a call from it (were its certificate still accepted) does not readmit it.
    assert b.agg.wait_for_round(1)
    record = b.agg.history[0]
    assert record["closed_by"] == "all_live"
    assert record["missing"] == ["col3"] and record["dropped"] == {"col3": "revoked"}
    b.agg.heartbeat("col3")
    assert _info(b.agg, "col3")["expected_this_round"] is False
    b.script.deliver(b.agg, "col1", 1)
    b.script.deliver(b.agg, "col2", 1)
    assert b.agg.wait_for_round(2)
    assert b.agg.history[1]["closed_by"] == "all_live"


# --------------------------------------------------------------------------------- liveness
SILENT = {"stragglers": {"liveness_timeout_seconds": 0.3, "round_deadline_seconds": 30}}


def test_silent_participant_is_dropped_and_the_round_closes_before_the_deadline(
        build: Factory) -> None:
    # Prepare: col1 and col2 are alive (heartbeats); col3 never calls.
    b = build(SILENT, before=[("col1", EVERYTHING)])
    with KeepAlive(b.agg, ["col1", "col2"]):
        # Execute
        b.script.deliver(b.agg, "col2", 0)
        closed = b.agg.wait_for_round(1, timeout=5)
    # Assert: closed well before the 30 s deadline, without col3, and only col3 was dropped.
    assert closed, b.agg.status()
    record = b.agg.history[0]
    assert record["closed_by"] == "all_live"
    assert record["duration_seconds"] < 5
    assert list(record["dropped"]) == ["col3"]
    assert record["dropped"]["col3"].startswith("silent for more than 0.3 s")


def test_dropped_participant_that_calls_again_rejoins_at_the_next_round(build: Factory) -> None:
    # Prepare: col3 is dropped for silence while col1 and col2 are alive and col2 still owes.
    b = build(SILENT, before=[("col1", EVERYTHING)])
    with watch_logs() as logs, KeepAlive(b.agg, ["col1", "col2"]) as alive:
        logs.wait_for(r"col3 dropped: no call for .* \(round 0\)")
        assert "col3" in b.agg.status()["dropped"]
        # Execute: col3 calls again (and stays alive from now on).
        b.agg.heartbeat("col3")
        alive.names.add("col3")
        now = _info(b.agg, "col3")
        b.script.deliver(b.agg, "col2", 0)
        assert b.agg.wait_for_round(1)
        later = _info(b.agg, "col3")
    # Assert: not expected in the round it was dropped from (which closed without it), but
    # expected again in the next one.
    assert now["expected_this_round"] is False and "dropped" not in now
    assert b.agg.history[0]["closed_by"] == "all_live"
    assert later["expected_this_round"] is True and later["pending_tasks"] == list(EVERYTHING)
    assert b.agg.status()["dropped"] == {}


# --------------------------------------------------------------------------------- quorum
@pytest.mark.parametrize("policy", ["fail", "wait"])
def test_without_quorum_the_round_waits_for_the_deadline(build: Factory, policy: str) -> None:
    # Prepare: quorum 2; col1 delivered; col2 and col3 revoked: every live one is done.
    deadline = 0.5
    b = build({"stragglers": {"round_deadline_seconds": deadline, "min_collaborators": 2,
                              "on_deadline_without_quorum": policy}},
              before=[("col1", EVERYTHING)])
    # Execute
    b.agg.mark_revoked(["col2", "col3"])
    # Assert: before the deadline nothing happens; after it, the plan's policy.
    assert not b.agg.wait_until_done(deadline / 2)
    assert b.agg.round_number == 0 and not b.agg.failed
    if policy == "fail":
        assert b.agg.wait_until_done(5)
        assert "deadline of 0.5 s passed with 1 of the 2" in b.agg.failed
        assert b.agg.status()["phase"] == "failed" and b.agg.history == []
    else:
        assert not b.agg.wait_for_round(1, timeout=deadline + 0.3)
        status = b.agg.status()
        assert status["phase"] == "training" and not status["failed"]
        assert status["deadline_in_seconds"] == 0


# --------------------------------------------------------------------------------- async
ASYNC = {"mode": {"name": "async", "buffer_size": 3, "staleness": "constant"},
         "stragglers": {"round_deadline_seconds": 0.5, "min_collaborators": 2}}


@pytest.mark.parametrize(("col3", "deadline", "closed_by"), [("silent", 0.5, "deadline"),
                                                             ("revoked", 30, "all_live")])
def test_async_version_closes_with_quorum_when_the_buffer_cannot_fill(
        build: Factory, col3: str, deadline: float, closed_by: str) -> None:
    # Prepare: a buffer of 3 that only 2 sites will ever fill; col3 silent or revoked.
    b = build({**ASYNC, "stragglers": {**ASYNC["stragglers"],
                                       "round_deadline_seconds": deadline}},
              before=[("col1", EVERYTHING)])
    # Execute
    b.script.deliver(b.agg, "col2", 0)
    if col3 == "revoked":
        b.agg.mark_revoked(["col3"])
    # Assert: silent: closed by the deadline with the quorum; revoked: closed at once (long
    # before its 30 s deadline) because every live site has reported.
    assert b.agg.wait_for_round(1, timeout=5), b.agg.status()
    record = b.agg.history[0]
    assert record["closed_by"] == closed_by
    assert record["collaborators"] == ["col1", "col2"]
    if col3 == "silent":
        assert record["duration_seconds"] >= deadline


def test_async_version_closes_when_the_buffer_is_full(build: Factory) -> None:
    # Prepare
    b = build({**ASYNC, "mode": {**ASYNC["mode"], "buffer_size": 2},
               "stragglers": {"round_deadline_seconds": 30}}, before=[("col1", ("train",))])
    # Execute
    b.script.deliver(b.agg, "col2", 0, ("train",))
    # Assert: two train updates close the version; nobody else was waited for.
    assert b.agg.wait_for_round(1)
    record = b.agg.history[0]
    assert record["closed_by"] == "buffer_full"
    assert record["collaborators"] == ["col1", "col2"]


# ================================================================================ RoundState
def _rules_and_state(tmp_path: Path, overrides: Mapping[str, Any] | None = None,
                     round_number: int = 0) -> RoundState:
    plan = make_plan(tmp_path, overrides)
    rules = RoundRules(frozenset(plan.collaborators), plan.aggregator.rounds_to_train,
                       plan.stragglers, plan.mode, plan.stragglers.liveness_timeout_seconds)
    return RoundState.open(rules, make_assigner(plan), round_number, now=100.0)


def _rec(name: str, task: str, round_number: int = 0) -> ResultRecord:
    return ResultRecord(ResultKey(name, round_number, task), 10, {})


def test_counters_follow_results(tmp_path: Path) -> None:
    # Prepare
    rnd = _rules_and_state(tmp_path)
    assert (rnd.outstanding, rnd.present, rnd.trains) == (3, set(), 0)
    # Execute / Assert: a collaborator stops being outstanding only with its last task.
    rnd.record(_rec("col1", "aggregated_model_validation"))
    assert (rnd.outstanding, rnd.present, rnd.trains) == (3, set(), 0)
    rnd.record(_rec("col1", "train"))
    assert (rnd.outstanding, rnd.present, rnd.trains) == (3, {"col1"}, 1)
    assert [t.name for t in rnd.pending("col1")] == ["locally_tuned_model_validation"]
    rnd.record(_rec("col1", "locally_tuned_model_validation"))
    assert rnd.outstanding == 2 and rnd.pending("col1") == ()
    assert rnd.has(ResultKey("col1", 0, "train")) and not rnd.has(ResultKey("col2", 0, "train"))
    assert rnd.verdict(100.0) is Verdict.OPEN
    for name in ("col2", "col3"):
        for task in EVERYTHING:
            rnd.record(_rec(name, task))
    assert (rnd.outstanding, len(rnd.present), rnd.trains) == (0, 3, 3)
    assert rnd.verdict(100.0) is Verdict.CLOSE_COMPLETE


def test_counters_on_resume_equal_counters_of_live_recording(tmp_path: Path) -> None:
    # Prepare
    live = _rules_and_state(tmp_path)
    records = [_rec("col2", t) for t in EVERYTHING] + [_rec("col1", "train")]
    for record in records:
        live.record(record)
    # Execute
    restored = RoundState.open(live.rules, live.assigner, 0, 200.0, records)
    # Assert
    for attr in ("outstanding", "present", "trains", "keys", "done_tasks", "expected"):
        assert getattr(restored, attr) == getattr(live, attr), attr


def test_final_round_counts_the_global_validation_as_presence(tmp_path: Path) -> None:
    # Prepare: rounds_to_train 3, so round 3 only validates the global model.
    rnd = _rules_and_state(tmp_path, round_number=3)
    assert rnd.is_final and rnd.primary_task == "aggregated_model_validation"
    assert [t.name for t in rnd.pending("col1")] == ["aggregated_model_validation"]
    # Execute
    rnd.record(_rec("col1", "aggregated_model_validation", 3))
    # Assert
    assert rnd.present == {"col1"} and rnd.outstanding == 2 and rnd.trains == 0


def test_drop_stops_waiting_once_and_only_for_known_participants(tmp_path: Path) -> None:
    # Prepare
    rnd = _rules_and_state(tmp_path)
    for task in EVERYTHING:
        rnd.record(_rec("col1", task))
    # Execute / Assert: dropping one that owes decrements; one that delivered does not.
    assert rnd.drop("col2", "revoked") and rnd.outstanding == 1
    assert not rnd.drop("col2", "revoked") and rnd.outstanding == 1
    assert not rnd.drop("mallory", "revoked")
    assert rnd.drop("col1", "silent") and rnd.outstanding == 1
    assert rnd.expected == {"col3"}
    # A revoked participant is not readmitted by a call; a silent one is, for the next round.
    rnd.touch("col2", 101.0)
    rnd.touch("col1", 101.0)
    assert set(rnd.dropped) == {"col2"}
    nxt = rnd.next_round(1, 102.0)
    assert nxt.expected == {"col1", "col3"} and nxt.outstanding == 2
    nxt.readmit("col2")
    assert nxt.dropped == {}


def test_verdict_all_live_needs_quorum_then_deadline_decides(tmp_path: Path) -> None:
    # Prepare: quorum 2, deadline 30 s, round opened at t=100.
    rnd = _rules_and_state(tmp_path, {"stragglers": {"on_deadline_without_quorum": "fail"}})
    for task in EVERYTHING:
        rnd.record(_rec("col1", task))
    rnd.drop("col2", "revoked")
    rnd.drop("col3", "revoked")
    # Assert: everyone live is done but one is not a quorum: open until the deadline, then fail.
    assert rnd.outstanding == 0
    assert rnd.verdict(129.9) is Verdict.OPEN
    assert rnd.seconds_to_deadline(120.0) == pytest.approx(10.0)
    assert rnd.verdict(130.0) is Verdict.FAIL
    rnd.readmit("col2")  # (expected stays as it was at the round's start)
    for task in EVERYTHING:
        rnd.record(_rec("col2", task))
    assert rnd.verdict(110.0) is Verdict.CLOSE_ALL_LIVE


def test_silent_scan_skips_parked_and_dropped_participants(tmp_path: Path) -> None:
    # Prepare: liveness 5 s, round opened at t=100 (everyone seen then).
    rnd = _rules_and_state(tmp_path, {"stragglers": {"liveness_timeout_seconds": 5}})
    rnd.touch("col1", 103.0)
    rnd.park("col2", 1)
    # Assert
    assert rnd.next_liveness_check(101.0) == pytest.approx(4.0)  # col3, seen at 100
    assert rnd.silent(104.0) == []
    assert rnd.silent(105.5) == ["col3"]
    assert rnd.silent(108.5) == ["col1", "col3"]  # col2 is parked: alive
    rnd.drop("col3", "silent")
    rnd.park("col2", -1)  # its poll ended: silent since it was last seen (t=100)
    assert rnd.silent(108.5) == ["col1", "col2"]


def test_liveness_off_never_drops(tmp_path: Path) -> None:
    rnd = _rules_and_state(tmp_path, {"stragglers": {"liveness_timeout_seconds": 0}})
    assert rnd.silent(1e9) == [] and rnd.next_liveness_check(1e9) is None


def test_async_buffer_and_stale_results(tmp_path: Path) -> None:
    # Prepare: version 2 of an async federation with a buffer of 2.
    rnd = _rules_and_state(tmp_path, {"mode": {"name": "async", "buffer_size": 2}},
                           round_number=2)
    # Execute: a stale update trained on version 1 counts for the buffer, owes nothing.
    rnd.record(_rec("col1", "train", 1))
    # Assert
    assert rnd.trains == 1 and rnd.outstanding == 3 and rnd.present == {"col1"}
    assert rnd.verdict(100.0) is Verdict.OPEN
    rnd.record(_rec("col2", "train", 2))
    assert rnd.verdict(100.0) is Verdict.CLOSE_BUFFER


def test_the_next_round_keeps_parked_polls_last_seen_and_drops(tmp_path: Path) -> None:
    # Prepare: col1 is parked in a long-poll, col3 is dropped, col2 was seen at 150
    state = _rules_and_state(tmp_path)
    state.park("col1", +1)
    state.touch("col2", 150.0)
    state.drop("col3", "revoked")
    # Execute: the round closes while col1's poll is still parked
    following = state.next_round(1, 160.0)
    following.park("col1", -1)  # the poll ends after the swap
    # Assert: its count went back to zero, never below; the rest is carried over
    assert following.parked["col1"] == 0
    assert following.last_seen["col2"] == 150.0
    assert following.dropped == {"col3": "revoked"} and "col3" not in following.expected
