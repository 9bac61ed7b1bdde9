"""The aggregator's status as a JSON-able dict (what `fx aggregator status` shows).

Built under the aggregator's lock from the committed state and the open round; O(collaborators),
and only asked for by the status writer (twice a second) and GetStatus calls.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from openfl_like.federation.round_state import RoundState
from openfl_like.federation.state import AggregatorState
from openfl_like.plan.schema import Plan


def _phase(state: AggregatorState, rnd: RoundState, *, closing: bool, stopped: bool) -> str:
    if state.failed:
        return "failed"
    if state.done:
        return "done"
    if stopped:
        return "stopping"
    if closing:
        return "closing"
    return "final_validation" if rnd.is_final else "training"


def estimate(history: Sequence[Mapping[str, Any]], *, round_age: float,
             to_deadline: float | None, rounds_left: int, finished: bool) -> dict[str, Any]:
    """How long the open round (and the rest of the federation) may still take.

    The median duration of the closed rounds (robust to one slow round) minus the open round's
    age, never below zero and never past the round's deadline when stragglers are handled by
    one; None before any round closed (nothing to go by) and once the federation ended.
    """
    durations = [float(r["duration_seconds"]) for r in history
                 if isinstance(r.get("duration_seconds"), (int, float))]
    median = statistics.median(durations) if durations else None
    if finished or median is None:
        remaining = None
    else:
        remaining = max(0.0, median - round_age)
        if to_deadline is not None:
            remaining = min(remaining, max(0.0, to_deadline))
    total = None if remaining is None or median is None else remaining + median * max(
        0, rounds_left - 1)
    return {
        "median_round_seconds": None if median is None else round(median, 3),
        "rounds_measured": len(durations),
        "round_remaining_seconds": None if remaining is None else round(remaining, 3),
        "federation_remaining_seconds": None if total is None else round(total, 3),
    }


def status_of(*, plan: Plan, state: AggregatorState, rnd: RoundState, now: float,
              closing: bool, disk_problem: str, stopped: bool, tensorboard: bool,
              samples: Mapping[str, Mapping[str, int]] | None = None) -> Mapping[str, object]:
    heartbeat = max(plan.collaborator.heartbeat_seconds, 1.0)
    finished = state.done or bool(state.failed)
    collaborators: dict[str, object] = {}
    waiting_for = []
    for name in sorted(plan.collaborators):
        seen = rnd.last_seen.get(name)
        pending = [t.name for t in rnd.pending(name)] if not finished else []
        expected = name in rnd.expected
        if pending and expected:
            waiting_for.append(name)
        info: dict[str, Any] = {
            "active": rnd.parked.get(name, 0) > 0
            or (seen is not None and now - seen <= 3 * heartbeat),
            "last_seen_seconds_ago": None if seen is None else round(now - seen, 3),
            "pending_tasks": pending,
            "expected_this_round": expected,
        }
        if name in rnd.dropped:
            info["dropped"] = rnd.dropped[name]
        if samples and name in samples:
            info["samples"] = dict(samples[name])
        collaborators[name] = info
    to_deadline = rnd.seconds_to_deadline(now)
    last = state.history[-1] if state.history else None
    age = rnd.age(now)
    # rounds still to close, this one and the final validation round (rounds_to_train) included
    rounds_left = max(0, plan.aggregator.rounds_to_train - state.round_number) + 1
    return {
        "federation": plan.federation.name,
        "federation_uuid": plan.federation_uuid,
        "mode": plan.mode.name,
        "aggregation": plan.aggregation.name,
        "round": state.round_number,
        "rounds_to_train": plan.aggregator.rounds_to_train,
        "phase": _phase(state, rnd, closing=closing, stopped=stopped),
        "failed": state.failed,
        "disk_problem": disk_problem,
        "round_age_seconds": round(age, 3),
        "deadline_in_seconds": None if to_deadline is None else round(to_deadline, 3),
        "results_in": len(rnd.results),
        "waiting_for": waiting_for,
        # each one awaited since the round opened (its last call: collaborators[name])
        "waiting_seconds": round(age, 3) if waiting_for else 0.0,
        "estimate": estimate(state.history, round_age=age, to_deadline=to_deadline,
                             rounds_left=rounds_left, finished=finished),
        "dropped": dict(sorted(rnd.dropped.items())),
        "collaborators": collaborators,
        "last_round": None if last is None else {
            "round": last["round"], "closed_by": last["closed_by"],
            "metrics": last["metrics"]},
        "best": {"round": state.best_round, "metric": state.best_metric,
                 "name": plan.aggregator.best_model.metric},
        "tensorboard": tensorboard,
    }
