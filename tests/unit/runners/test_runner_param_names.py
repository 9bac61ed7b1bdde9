"""plan.registry.RUNNER_PARAMS (read by the plan loader without importing any runner) matches
the runners' own keyword arguments: the same names and defaults."""

from __future__ import annotations

import inspect

import pytest

from openfl_like.plan.registry import RUNNER_APP_PARAMS, RUNNER_PARAMS
from openfl_like.runners.registry import known_runner_names, runner_class, runner_params


def test_every_runner_has_a_table() -> None:
    assert sorted(RUNNER_PARAMS) == sorted(known_runner_names())


@pytest.mark.parametrize("name", sorted(RUNNER_PARAMS))
def test_names_and_defaults_match_the_signature(name: str) -> None:
    if name == "keras":
        pytest.importorskip("tensorflow")
    expected = {**RUNNER_PARAMS[name], **{k: None for k in RUNNER_APP_PARAMS.get(name, ())}}
    assert set(runner_params(name)) == set(expected)
    signature = inspect.signature(runner_class(name).__init__)
    for key, default in RUNNER_PARAMS[name].items():
        assert signature.parameters[key].default == default, (name, key)
