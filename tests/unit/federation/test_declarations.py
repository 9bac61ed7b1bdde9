"""Sample counts declared at the handshake bound the weight of a collaborator's results."""

from __future__ import annotations

from pathlib import Path

import pytest

from openfl_like.core.errors import FederationError, ProtocolError
from openfl_like.core.messages import NamedTensor, ResultKey, TaskResult
from openfl_like.federation import Aggregator
from openfl_like.plan import plan_digest, plan_fingerprint
from tests.unit.federation.harness import initial_weights, make_plan


def _new(tmp_path: Path) -> tuple[Aggregator, object]:
    plan = make_plan(tmp_path)
    agg = Aggregator(plan, initial_weights=initial_weights(), state_dir=tmp_path / "state",
                     write_outputs=False)
    return agg, plan


def _train(name: str, size: int) -> TaskResult:
    return TaskResult(ResultKey(name, 0, "train"), size, {"loss": 1.0})


def _tensors() -> list[NamedTensor]:
    return [NamedTensor(n, a) for n, a in initial_weights().items()]


def test_results_are_bounded_by_the_declared_counts(tmp_path: Path) -> None:
    # Prepare
    agg, plan = _new(tmp_path)
    agg.handshake("col1", plan_digest(plan), plan_fingerprint(plan), {"train": 40, "valid": 8})
    # Execute / Assert: over the train count, refused; at it, accepted
    with pytest.raises(ProtocolError, match="exceeds the 40 train samples col1 declared"):
        agg.send_local_task_results(_train("col1", 41), iter(_tensors()))
    validation = TaskResult(ResultKey("col1", 0, "aggregated_model_validation"), 9, {"a": 1.0})
    with pytest.raises(ProtocolError, match="exceeds the 8 valid samples"):
        agg.send_local_task_results(validation, iter([]))
    assert agg.send_local_task_results(_train("col1", 40), iter(_tensors())).accepted
    assert agg.status()["results_in"] == 1
    agg.stop()


def test_a_collaborator_that_declared_nothing_cannot_weigh_in(tmp_path: Path) -> None:
    agg, _ = _new(tmp_path)
    with pytest.raises(ProtocolError, match="declared no sample counts"):
        agg.send_local_task_results(_train("col2", 10), iter(_tensors()))
    agg.stop()


@pytest.mark.parametrize("counts", [{"train": 0}, {"valid": 5}, {"train": 5, "test": 1},
                                    {"train": -1}, {"train": 2**60}])
def test_bad_declarations_are_refused_at_the_handshake(tmp_path: Path, counts) -> None:
    agg, plan = _new(tmp_path)
    with pytest.raises(ProtocolError):
        agg.handshake("col1", plan_digest(plan), plan_fingerprint(plan), counts)
    agg.stop()


def test_declarations_survive_a_restart_and_a_damaged_file_is_refused(tmp_path: Path) -> None:
    # Prepare: a declaration, then a restart (the collaborator does not handshake again)
    agg, plan = _new(tmp_path)
    agg.handshake("col1", plan_digest(plan), plan_fingerprint(plan), {"train": 40})
    agg.stop()
    resumed = Aggregator(plan, state_dir=tmp_path / "state", write_outputs=False)
    assert resumed.send_local_task_results(_train("col1", 40), iter(_tensors())).accepted
    resumed.stop()
    # Execute: one digit of the declared count changed on disk
    path = tmp_path / "state" / "declared.json"
    path.write_text(path.read_text().replace('"train":40', '"train":90'))
    # Assert
    with pytest.raises(FederationError, match=r"declared\.json: checksum mismatch"):
        Aggregator(plan, state_dir=tmp_path / "state", write_outputs=False)
