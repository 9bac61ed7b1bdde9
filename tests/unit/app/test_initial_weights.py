"""aggregator.initial_weights: a federation (or a director's validation) starts from given
NumPy weights, which must match the model exactly."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from openfl_like.app.aggregator import weights_from_file
from openfl_like.core.errors import ConfigError
from openfl_like.plan.load import load_plan
from openfl_like.runners.registry import initial_weights

PLAN = Path(__file__).resolve().parents[3] / "plans" / "numpy_digits"


def _plan_with(path: Path):  # type: ignore[no-untyped-def]
    plan = load_plan(PLAN)
    return dataclasses.replace(plan, aggregator=dataclasses.replace(
        plan.aggregator, initial_weights=str(path)))


def _reference() -> dict[str, np.ndarray]:
    plan = load_plan(PLAN)
    return dict(initial_weights("numpy", seed=0, **dict(plan.task_runner.params)))


def test_matching_weights_are_used_as_they_are(tmp_path: Path) -> None:
    reference = _reference()
    given = {k: np.full_like(v, 0.25) for k, v in reference.items()}
    np.savez(tmp_path / "w.npz", **given)
    loaded = weights_from_file(_plan_with(tmp_path / "w.npz"), reference)
    assert set(loaded) == set(reference)
    for name in reference:
        np.testing.assert_array_equal(loaded[name], given[name])


@pytest.mark.parametrize("change, message", [
    (lambda w: {k: v for k, v in list(w.items())[1:]}, "missing"),
    (lambda w: {k: v[..., :1] for k, v in w.items()}, "the model needs"),
    (lambda w: {k: v.astype(np.float64) for k, v in w.items()}, "float64"),
    (lambda w: {k: np.full_like(v, np.nan) for k, v in w.items()}, "not finite"),
])
def test_weights_that_do_not_fit_the_model_are_refused_naming_the_file(
        tmp_path: Path, change, message) -> None:  # type: ignore[no-untyped-def]
    reference = _reference()
    np.savez(tmp_path / "w.npz", **change(reference))
    with pytest.raises(ConfigError, match=message) as info:
        weights_from_file(_plan_with(tmp_path / "w.npz"), reference)
    assert "aggregator.initial_weights" in info.value.message


def test_pickled_arrays_are_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "w.npz", w=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ConfigError, match="cannot be read"):
        weights_from_file(_plan_with(tmp_path / "w.npz"), _reference())
