"""Envoys are matched to a plan by data contract; a refusal names each envoy and why."""

from __future__ import annotations

import pytest

from openfl_like.core.errors import PlanError
from openfl_like.director.matching import (
    EnvoyView,
    choose_envoys,
    match_envoys,
    required_envoys,
)
from openfl_like.plan.schema import DataContract
from tests.unit.director.conftest import CONTRACT_DICT

PLAN = DataContract(features=(4,), classes=("a", "b"))


def test_matching_names_the_differing_keys() -> None:
    other = {**CONTRACT_DICT, "classes": ["a", "c"]}
    result = match_envoys(PLAN, [EnvoyView("site_a", CONTRACT_DICT, True),
                                 EnvoyView("site_b", other, True),
                                 EnvoyView("site_c", CONTRACT_DICT, False)])
    assert result.matching == ("site_a",)
    assert result.offline == ("site_c",)
    assert result.differences == {
        "site_b": "classes differ: plan ['a', 'b'] vs envoy ['a', 'c']"}


def test_too_few_matching_envoys_is_refused_naming_each() -> None:
    other = {**CONTRACT_DICT, "features": [5]}
    with pytest.raises(PlanError) as info:
        choose_envoys(PLAN, [EnvoyView("site_a", CONTRACT_DICT, True),
                             EnvoyView("site_b", other, True),
                             EnvoyView("site_c", CONTRACT_DICT, False)], needed=2)
    message = str(info.value)
    assert "1 online envoy(s) match the plan (site_a), 2 needed" in message
    assert "site_b: features differ: plan [4] vs envoy [5]" in message
    assert "site_c: offline" in message


def test_required_envoys() -> None:
    assert required_envoys(0, True) == 1
    assert required_envoys(3, True) == 3
    assert required_envoys(3, False) == 1
    assert choose_envoys(PLAN, [EnvoyView("b", CONTRACT_DICT, True),
                                EnvoyView("a", CONTRACT_DICT, True)], needed=1) == ("a", "b")
