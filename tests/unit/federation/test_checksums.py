"""Every persisted file is checksummed: one changed byte refuses the resume and names the file.
And the success next to those refusals: an undamaged state resumes to the very model an
uninterrupted run ends with, for every aggregation and for asynchronous mode."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from openfl_like.core.errors import FederationError
from openfl_like.plan import Plan
from tests.unit.federation.harness import make_plan, run_federation
from tests.unit.federation.scenario import EVERYTHING, Script, new_aggregator


def _after_round_0(tmp_path: Path, aggregation: str = "fedavg") -> tuple[Plan, Path]:
    """A federation whose round 0 closed, then stopped; returns (plan, state folder)."""
    plan = make_plan(tmp_path, {"aggregation": {"name": aggregation}})
    agg = new_aggregator(tmp_path, plan, inline_max_bytes=0)  # (updates staged as files)
    Script(plan).round(agg, 0)
    agg.stop()
    return plan, tmp_path / "state"


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def _refusal(tmp_path: Path, plan: Plan) -> str:
    with pytest.raises(FederationError) as caught:
        new_aggregator(tmp_path, plan, initial_weights=None)
    return caught.value.message


def test_one_changed_digit_in_state_json_refuses_the_resume(tmp_path: Path) -> None:
    # Prepare: the weight of one update in the derived model of round 1, 10.0 -> 11.0.
    plan, state_dir = _after_round_0(tmp_path)
    path = state_dir / "state.json"
    text = path.read_text()
    changed, n = re.subn(r'("weight":)1(\d)', r"\g<1>2\g<2>", text, count=1)
    assert n == 1 and len(changed) == len(text)
    path.write_text(changed)
    # Execute
    message = _refusal(tmp_path, plan)
    # Assert
    assert str(path) in message and "checksum mismatch" in message


def test_flipped_byte_in_a_staged_update_a_derived_model_needs_refuses_the_resume(
        tmp_path: Path) -> None:
    # Prepare: FedAvg's model of round 1 is recomputed from the staged updates at resume.
    plan, state_dir = _after_round_0(tmp_path)
    raw = json.loads((state_dir / "state.json").read_text())
    part = raw["derived_models"]["1"][0]
    staged = state_dir / "staging" / part["staged"]
    _flip_byte(staged, part["layout"]["dense/kernel"]["offset"] + 3)
    # Execute
    message = _refusal(tmp_path, plan)
    # Assert
    assert str(staged) in message and "checksum" in message


def test_flipped_byte_in_a_model_file_refuses_the_resume(tmp_path: Path) -> None:
    # Prepare: FedOpt writes its model of round 1 to models/model-r1.bin.
    plan, state_dir = _after_round_0(tmp_path, "fedopt")
    model = state_dir / "models" / "model-r1.bin"
    manifest = json.loads((state_dir / "models" / "model-r1.bin.json").read_text())
    _flip_byte(model, manifest["tensors"]["dense/bias"]["offset"])
    # Execute
    message = _refusal(tmp_path, plan)
    # Assert
    assert str(model) in message and "dense/bias" in message and "checksum" in message


def test_manifest_whose_sha256_does_not_match_refuses_the_resume(tmp_path: Path) -> None:
    # Prepare: a still-valid JSON manifest whose layout was edited (a shape), sha256 kept.
    plan, state_dir = _after_round_0(tmp_path, "fedopt")
    path = state_dir / "models" / "model-r1.bin.json"
    raw = json.loads(path.read_text())
    raw["tensors"]["dense/bias"]["shape"] = [2]
    path.write_text(json.dumps(raw))
    # Execute
    message = _refusal(tmp_path, plan)
    # Assert
    assert str(path) in message and "manifest checksum mismatch" in message


def test_an_undamaged_state_resumes(tmp_path: Path) -> None:
    # The success next to the refusals above: the same steps without damage resume.
    plan, _ = _after_round_0(tmp_path, "fedopt")
    resumed = new_aggregator(tmp_path, plan, initial_weights=None)
    try:
        assert resumed.round_number == 1 and not resumed.failed
    finally:
        resumed.stop()


# --------------------------------------------------------------------------- resume equality
MODES: dict[str, Mapping[str, Any]] = {
    "fedavg": {"aggregation": {"name": "fedavg"}},
    "fedopt": {"aggregation": {"name": "fedopt", "optimizer": "yogi", "lr": 0.5}},
    "median": {"aggregation": {"name": "median"}},
    "trimmed_mean": {"aggregation": {"name": "trimmed_mean", "trim_fraction": 0.34}},
    # One update per site per version: the same versions whatever the threads' timing.
    "async": {"mode": {"name": "async", "buffer_size": 3, "staleness": "polynomial"}},
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_stopped_mid_round_and_rebuilt_gives_the_uninterrupted_model(tmp_path: Path,
                                                                      mode: str) -> None:
    # Prepare: the reference, uninterrupted.
    plan = make_plan(tmp_path, MODES[mode])
    reference = new_aggregator(tmp_path / "ref", plan)
    run_federation(plan, reference)
    reference.stop()
    # Round 0 in another order, then round 1 half delivered, then the aggregator is stopped.
    agg = new_aggregator(tmp_path / "run", plan)
    script = Script(plan)
    script.round(agg, 0, order=("col3", "col1", "col2"))
    script.deliver(agg, "col2", 1)
    script.deliver(agg, "col3", 1, EVERYTHING[:2])
    assert agg.round_number == 1
    agg.stop()
    # Execute: rebuilt from the folder, the federation carries on to the end.
    resumed = new_aggregator(tmp_path / "run", plan, initial_weights=None)
    try:
        assert resumed.round_number == 1 and resumed.status()["results_in"] >= 5
        run_federation(plan, resumed)
        # Assert: bit for bit the uninterrupted model, and each round's train set the same.
        final, expected = resumed.weights(), reference.weights()
        assert sorted(final) == sorted(expected)
        for name, array in expected.items():
            assert final[name].dtype == array.dtype
            assert np.array_equal(final[name], array), (mode, name, final[name], array)
        trained = [sorted(r["per_collaborator"]) for r in resumed.history]
        assert trained == [sorted(r["per_collaborator"]) for r in reference.history]
    finally:
        resumed.stop()
