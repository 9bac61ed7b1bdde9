"""docs/plan_reference.md is generated from the schema, and documents exactly the loader's keys."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from openfl_like.core.errors import PlanError
from openfl_like.plan.load import load_plan
from openfl_like.plan.reference import DESCRIPTIONS, documented_keys, render

ROOT = Path(__file__).resolve().parents[3]
CONTRACT = {"features": [4], "classes": ["a", "b"]}


def test_committed_reference_is_up_to_date() -> None:
    committed = (ROOT / "docs" / "plan_reference.md").read_text(encoding="utf-8")
    assert render() == committed, "run `make docs` and commit docs/plan_reference.md"


def test_every_description_names_a_key_and_every_key_has_one(monkeypatch: Any) -> None:
    monkeypatch.setitem(DESCRIPTIONS, "aggregator.retired_key", "gone")
    with pytest.raises(KeyError, match="retired_key"):
        render()
    monkeypatch.delitem(DESCRIPTIONS, "aggregator.retired_key")
    monkeypatch.delitem(DESCRIPTIONS, "mode.buffer_size")
    with pytest.raises(KeyError, match=r"no description for 'mode\.buffer_size'"):
        render()


def _doc_with(section: str) -> dict[str, Any]:
    """A plan whose ``section`` carries the unknown key 'zzzzzz' (so the error lists the
    known keys of that section and suggests none)."""
    doc: dict[str, Any] = {"data_contract": dict(CONTRACT)}
    if section == "":
        doc["zzzzzz"] = 1
        return doc
    if section.startswith("task_runner.params["):
        runner = section[len("task_runner.params["):-1]
        doc["task_runner"] = {"name": runner, "params": {"zzzzzz": 1}}
        return doc
    target = doc
    for part in section.split("."):
        target = target.setdefault(part, {})
    target["zzzzzz"] = 1
    if section == "mode":
        target["name"] = "async"
    return doc


@pytest.mark.parametrize("section", sorted(documented_keys()))
def test_reference_documents_exactly_the_keys_the_loader_knows(tmp_path: Path,
                                                               section: str) -> None:
    folder = tmp_path / "plan"
    folder.mkdir()
    (folder / "plan.yaml").write_text(yaml.safe_dump(_doc_with(section)))
    (folder / "cols.yaml").write_text(yaml.safe_dump({"collaborators": ["one", "two"]}))
    (folder / "data.yaml").write_text(yaml.safe_dump({"one": 0, "two": 1}))
    with pytest.raises(PlanError) as info:
        load_plan(folder)
    message = str(info.value)
    assert "see docs/plan_reference.md" in message
    match = re.search(r"zzzzzz: unknown key \(known: ([^)]*)\)", message)
    assert match, message
    known = set(match.group(1).split(", "))
    assert known == set(documented_keys()[section]), section
