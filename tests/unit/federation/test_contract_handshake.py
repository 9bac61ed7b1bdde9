"""Item: the data contract compared explicitly at the handshake."""

from __future__ import annotations

from pathlib import Path

import pytest

from openfl_like.core.errors import PlanMismatchError
from openfl_like.federation import Aggregator
from openfl_like.federation.collaborator import CollaboratorSettings
from openfl_like.plan import plan_digest, plan_fingerprint
from openfl_like.plan.contract import contract_digest
from tests.unit.federation.harness import initial_weights, make_plan

CONTRACT = {"features": [2], "classes": ["a", "b", "c"]}


def _agg(tmp_path: Path, plan) -> Aggregator:  # type: ignore[no-untyped-def]
    return Aggregator(plan, state_dir=tmp_path / "state", output_dir=tmp_path / "out",
                      initial_weights=initial_weights())


def test_a_different_contract_digest_is_refused_naming_it(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, {"data_contract": CONTRACT})
    mine = contract_digest(plan.data_contract)
    agg = _agg(tmp_path, plan)
    ok = agg.handshake("col2", plan_digest(plan), plan_fingerprint(plan), None, mine)
    assert ok.rounds_total == 3
    theirs = "f" * 64
    with pytest.raises(PlanMismatchError, match=rf"^data contract differs: digest {mine[:12]} "
                                                rf"here, {theirs[:12]} at col2$"):
        agg.handshake("col2", plan_digest(plan), plan_fingerprint(plan), None, theirs)
    with pytest.raises(PlanMismatchError, match=r"data contract differs: digest \w+ here, "
                                                r"\(no contract\) at col1"):
        agg.handshake("col1", plan_digest(plan), plan_fingerprint(plan), None, "")


def test_without_a_contract_an_empty_digest_is_expected(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    agg = _agg(tmp_path, plan)
    agg.handshake("col1", plan_digest(plan), plan_fingerprint(plan), None, "")
    agg.handshake("col1", plan_digest(plan), plan_fingerprint(plan))  # not sent: not compared
    with pytest.raises(PlanMismatchError, match=r"digest \(no contract\) here, abc at col1"):
        agg.handshake("col1", plan_digest(plan), plan_fingerprint(plan), None, "abc")


def test_collaborator_settings_carry_the_contract_digest(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, {"data_contract": CONTRACT})
    assert CollaboratorSettings.from_plan(plan).contract_digest == contract_digest(
        plan.data_contract)
    assert CollaboratorSettings.from_plan(make_plan(tmp_path / "b")).contract_digest == ""
