"""A round close is a transaction: a step that fails changes nothing, a retry gives the same bits.

Failures are injected with the aggregator's ``fault_hook`` at each step of the close
(aggregate, model_write, snapshot_write, outputs). Once: the federation must end with exactly
the model of an uninterrupted run (FedOpt's moments applied once, not twice). Every time: the
federation ends as failed with the step's error, after ``max_attempts`` tries. Outputs are
derived files: their failure never fails the federation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from openfl_like.core.errors import FederationError
from openfl_like.federation import Aggregator
from openfl_like.federation.closer import CloseRetry
from openfl_like.federation.round_close import (
    STEP_AGGREGATE,
    STEP_MODEL_WRITE,
    STEP_OUTPUTS,
    STEP_SNAPSHOT_WRITE,
)
from tests.unit.federation.harness import make_plan, run_federation
from tests.unit.federation.scenario import EVERYTHING, Script, new_aggregator

FAST_RETRY = CloseRetry(max_attempts=3, first_backoff_seconds=0.01)
FAILING_ROUND = 1  # a middle round: FedOpt has moments from round 0 by then
AGGREGATIONS = {
    "fedavg": {"name": "fedavg"},
    "fedopt": {"name": "fedopt", "optimizer": "adam", "lr": 0.5},
    "median": {"name": "median"},
}


class Fault:
    """A fault hook that raises at ``step`` of round ``round_number`` the first ``times`` times
    (None: every time), and counts the calls it saw there."""

    def __init__(self, step: str, round_number: int = FAILING_ROUND, times: int | None = 1
                 ) -> None:
        self.step, self.round_number, self.times = step, round_number, times
        self.calls = 0
        self.raised = 0

    def __call__(self, step: str, round_number: int) -> None:
        if step != self.step or round_number != self.round_number:
            return
        self.calls += 1
        if self.times is None or self.raised < self.times:
            self.raised += 1
            raise RuntimeError(f"injected failure at {step} of round {round_number}")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory
              ) -> Callable[[str], dict[str, np.ndarray]]:
    """The final model of an uninterrupted run, per aggregation (computed once each)."""
    cache: dict[str, dict[str, np.ndarray]] = {}

    def get(aggregation: str) -> dict[str, np.ndarray]:
        if aggregation not in cache:
            root = tmp_path_factory.mktemp(f"reference-{aggregation}")
            plan = make_plan(root, {"aggregation": AGGREGATIONS[aggregation]})
            agg = new_aggregator(root, plan)
            try:
                run_federation(plan, agg)
                assert agg.done and not agg.failed
                cache[aggregation] = agg.weights()
            finally:
                agg.stop()
        return cache[aggregation]

    return get


def _assert_same_model(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(expected)
    for name, array in expected.items():
        assert got[name].dtype == array.dtype, name
        assert np.array_equal(got[name], array), (name, got[name], array)


@pytest.fixture
def stop_later() -> Iterator[list[Aggregator]]:
    """Aggregators a test made: stopped (closer thread ended, files closed) after it."""
    made: list[Aggregator] = []
    yield made
    for agg in made:
        agg.stop()


# ------------------------------------------------------------------------------- once, then ok
@pytest.mark.parametrize(("aggregation", "step"), [
    ("fedavg", STEP_AGGREGATE), ("fedavg", STEP_SNAPSHOT_WRITE),
    ("fedopt", STEP_AGGREGATE), ("fedopt", STEP_MODEL_WRITE), ("fedopt", STEP_SNAPSHOT_WRITE),
    ("median", STEP_AGGREGATE), ("median", STEP_SNAPSHOT_WRITE),
])
def test_a_step_failing_once_is_retried_to_the_uninterrupted_model(
        tmp_path: Path, reference: Callable[[str], dict[str, np.ndarray]],
        stop_later: list[Aggregator], aggregation: str, step: str) -> None:
    # Prepare
    plan = make_plan(tmp_path, {"aggregation": AGGREGATIONS[aggregation]})
    fault = Fault(step)
    agg = new_aggregator(tmp_path, plan, fault_hook=fault, close_retry=FAST_RETRY)
    stop_later.append(agg)
    # Execute
    run_federation(plan, agg)
    # Assert: the failure happened, was retried once, and left no trace in the model.
    assert (fault.raised, fault.calls) == (1, 2)
    assert agg.done and not agg.failed
    assert [r["round"] for r in agg.history] == [0, 1, 2, 3]
    _assert_same_model(agg.weights(), reference(aggregation))
    # The state on disk is the same federation: a resume recomputes the same model.
    agg.stop()
    resumed = new_aggregator(tmp_path, plan, initial_weights=None)
    stop_later.append(resumed)
    _assert_same_model(resumed.weights(), reference(aggregation))


# ------------------------------------------------------------------------------- every time
@pytest.mark.parametrize(("aggregation", "step"), [
    ("fedavg", STEP_AGGREGATE), ("fedavg", STEP_SNAPSHOT_WRITE),
    ("fedopt", STEP_MODEL_WRITE), ("median", STEP_SNAPSHOT_WRITE),
])
def test_a_step_failing_every_time_fails_the_federation_with_the_reason(
        tmp_path: Path, stop_later: list[Aggregator], aggregation: str, step: str) -> None:
    # Prepare
    plan = make_plan(tmp_path, {"aggregation": AGGREGATIONS[aggregation]})
    fault = Fault(step, times=None)
    agg = new_aggregator(tmp_path, plan, fault_hook=fault, close_retry=FAST_RETRY)
    stop_later.append(agg)
    # Execute: collaborators are told, and end with the reason as an error.
    with pytest.raises(FederationError, match=f"injected failure at {step} of round 1"):
        run_federation(plan, agg, timeout=15)
    # Assert: exactly max_attempts tries; the reason everywhere; round 1 never closed.
    assert fault.calls == FAST_RETRY.max_attempts
    assert f"round 1 could not be closed: RuntimeError: injected failure at {step}" in agg.failed
    status = agg.status()
    assert status["phase"] == "failed" and status["failed"] == agg.failed
    assert [r["round"] for r in agg.history] == [0] and agg.round_number == 1
    # The failure is persisted: a restart does not quietly carry on.
    agg.stop()
    again = new_aggregator(tmp_path, plan, initial_weights=None)
    stop_later.append(again)
    assert again.failed == agg.failed and again.wait_until_done(0)


def test_a_failing_close_never_reaches_the_uploader(tmp_path: Path,
                                                    stop_later: list[Aggregator]) -> None:
    # Prepare: round 0's close fails once.
    plan = make_plan(tmp_path)
    fault = Fault(STEP_AGGREGATE, round_number=0)
    agg = new_aggregator(tmp_path, plan, fault_hook=fault, close_retry=FAST_RETRY)
    stop_later.append(agg)
    script = Script(plan)
    script.deliver(agg, "col1", 0)
    script.deliver(agg, "col2", 0)
    # Execute: the upload that makes the round due.
    acks = script.deliver(agg, "col3", 0)
    # Assert: its ack is a plain acceptance; the close failed behind it and was retried.
    assert [(a.accepted, a.duplicate) for a in acks] == [(True, False)] * len(EVERYTHING)
    assert agg.wait_for_round(1)
    assert fault.raised == 1 and not agg.failed


# ------------------------------------------------------------------------------- outputs
@pytest.mark.parametrize("failing_round", [1, 3], ids=["training-round", "final-round"])
def test_outputs_failing_never_fail_the_federation(
        tmp_path: Path, reference: Callable[[str], dict[str, np.ndarray]],
        stop_later: list[Aggregator], failing_round: int) -> None:
    # Prepare: writing the outputs fails every time it is tried in that round.
    plan = make_plan(tmp_path)
    fault = Fault(STEP_OUTPUTS, round_number=failing_round, times=None)
    agg = new_aggregator(tmp_path, plan, fault_hook=fault, close_retry=FAST_RETRY)
    stop_later.append(agg)
    # Execute
    run_federation(plan, agg, timeout=15)
    # Assert: tried once (outputs are not retried: a restart redoes them), and harmless.
    assert fault.calls == 1
    assert agg.done and not agg.failed and agg.status()["phase"] == "done"
    _assert_same_model(agg.weights(), reference("fedavg"))
