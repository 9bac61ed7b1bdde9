"""The vertical plan: the ready plan loads; each mistake is named with the file, key and why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from openfl_like.core.errors import PlanError
from openfl_like.core.vertical import PartyRole
from openfl_like.plan.vertical_config import (
    CheckpointSettings,
    SplitModelSettings,
    TimeoutSettings,
    load_vertical_plan,
    parse_vertical_plan,
)

REPO = Path(__file__).resolve().parents[3]
READY = REPO / "plans" / "vertical_digits"


def _minimal() -> dict[str, Any]:
    return {"session_id": "s1", "leader": {"name": "shop", "address": "127.0.0.1:5001"},
            "follower": {"name": "bank", "address": "10.0.0.2:5002"}}


def _parse(doc: object, tmp_path: Path) -> Any:
    return parse_vertical_plan(doc, plan_file=tmp_path / "plan.yaml")


def test_ready_plan_loads_from_folder_or_file() -> None:
    # Execute
    plan = load_vertical_plan(READY)
    same = load_vertical_plan(READY / "plan.yaml")
    # Assert
    assert plan == same
    assert plan.leader.name == "shop" and plan.follower.name == "bank"
    assert plan.party(PartyRole.LEADER) is plan.leader
    assert plan.peer(PartyRole.LEADER) is plan.follower
    assert plan.party_workspace(PartyRole.FOLLOWER) == READY / "workspace" / "bank"
    assert plan.data.source == "digits" and plan.checkpoint.keep >= 2


def test_defaults_and_listen_addresses(tmp_path: Path) -> None:
    plan = _parse(_minimal(), tmp_path)
    assert plan.model == SplitModelSettings()
    assert plan.checkpoint == CheckpointSettings()
    assert plan.timeouts == TimeoutSettings()
    assert plan.leader.listen == "127.0.0.1:5001"  # a loopback address: a local set-up
    assert plan.follower.listen == "0.0.0.0:5002"
    assert plan.workspace == tmp_path / "workspace"


@pytest.mark.parametrize(("edit", "message"), [
    ({"sesion_id": "x"}, "plan.yaml: sesion_id: unknown key (did you mean session_id?)"),
    ({"leader": {"name": "shop", "address": "127.0.0.1"}}, "plan.yaml: leader.address: must be "
     "host:port"),
    ({"leader": {"name": "shop", "address": "h:70000"}}, "leader.address: must be host:port"),
    ({"follower": {"name": "shop", "address": "h:1"}}, "follower.name: must differ from "
     "leader.name"),
    ({"follower": {"name": "../x", "address": "h:1"}}, "follower.name: invalid party name"),
    ({"follower": {"name": "bank", "address": "h:1", "listen": "x"}}, "follower.listen:"),
    ({"model": {"batch_size": 0}}, "plan.yaml: model.batch_size: must be >= 1 (got 0)"),
    ({"model": {"optimizer": "lbfgs"}}, "model.optimizer: must be one of adam, sgd"),
    ({"model": {"learning_rate": -1}}, "model.learning_rate: must be > 0"),
    ({"checkpoint": {"keep": 1}}, "checkpoint.keep: must be >= 2 (got 1)"),
    ({"checkpoint": {"every": 3}}, "checkpoint.every: unknown key (did you mean every_steps?)"),
    ({"timeouts": {"default_ms": 10, "scan_interval_ms": 100}},
     "timeouts.scan_interval_ms: must be <= default_ms"),
    ({"data": {"source": "csv"}}, "data.source: must be one of digits, npz"),
    ({"data": {"source": "npz"}}, "data.leader.train: is required"),
    ({"data": {"source": "npz", "seed": 1, "leader": {"train": "a", "test": "b"},
               "follower": {"train": "c", "test": "d"}}}, "data.seed: applies to source "
     "'digits' only"),
    ({"data": {"leader": {"train": "a", "test": "b"}}}, "data.leader: applies to source 'npz'"),
    ({"session_id": ""}, "session_id: must be a non-empty string"),
])
def test_mistakes_are_named(tmp_path: Path, edit: dict[str, Any], message: str) -> None:
    # Prepare
    doc = _minimal()
    doc.update(edit)
    # Execute / Assert
    with pytest.raises(PlanError) as caught:
        _parse(doc, tmp_path)
    assert message in caught.value.message


def test_npz_paths_are_relative_to_the_plan(tmp_path: Path) -> None:
    doc = _minimal()
    doc["data"] = {"source": "npz", "leader": {"train": "l/train.npz", "test": "l/test.npz"},
                   "follower": {"train": "f/train.npz", "test": "f/test.npz"}}
    plan = _parse(doc, tmp_path)
    assert plan.data.leader is not None and plan.data.follower is not None
    assert plan.data.leader.train == tmp_path / "l" / "train.npz"
    assert plan.data.follower.test == tmp_path / "f" / "test.npz"


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="vertical plan not found"):
        load_vertical_plan(tmp_path / "nope.yaml")
    bad = tmp_path / "plan.yaml"
    bad.write_text("session_id: [unclosed\n")
    with pytest.raises(PlanError, match=r"plan.yaml: invalid YAML at line 2"):
        load_vertical_plan(tmp_path)
    bad.write_text(yaml.safe_dump(["not", "a", "mapping"]))
    with pytest.raises(PlanError, match="must be a mapping"):
        load_vertical_plan(bad)


def test_every_key_is_documented() -> None:
    """docs/vertical.md lists every key of the plan (so the table cannot drift silently)."""
    import dataclasses

    from openfl_like.plan import vertical_config as vc

    doc = (REPO / "docs" / "vertical.md").read_text()
    sections = {"model": vc.SplitModelSettings, "checkpoint": vc.CheckpointSettings,
                "timeouts": vc.TimeoutSettings, "leader": vc.PartySettings}
    for section, cls in sections.items():
        for f in dataclasses.fields(cls):
            assert f"`{section}.{f.name}`" in doc, f"{section}.{f.name} not in docs/vertical.md"
    for key in ("session_id", "workspace", "data.source", "data.seed", "data.test_fraction",
                "data.leader.train", "data.leader.test"):
        assert f"`{key}`" in doc, f"{key} not in docs/vertical.md"
