"""The plan digest follows the bytes of the model file a plan names (no TensorFlow needed)."""

from __future__ import annotations

from pathlib import Path

import yaml

from openfl_like.plan import describe_differences, load_plan, plan_digest, plan_fingerprint
from openfl_like.plan.digest import MODEL_FILE_KEY

PLAN = {
    "federation": {"name": "byom", "federation_uuid": "00000000-0000-4000-8000-000000000001"},
    "task_runner": {"name": "keras", "params": {"model": "models/init.keras"}},
}


def _site(tmp_path: Path, name: str, model_bytes: bytes | None) -> Path:
    folder = tmp_path / name
    (folder / "models").mkdir(parents=True)
    (folder / "plan.yaml").write_text(yaml.safe_dump(PLAN))
    (folder / "cols.yaml").write_text(yaml.safe_dump({"collaborators": ["col1", "col2"]}))
    (folder / "data.yaml").write_text(yaml.safe_dump({"col1": 0, "col2": 1}))
    if model_bytes is not None:
        (folder / "models" / "init.keras").write_bytes(model_bytes)
    return folder


def test_digest_changes_with_the_model_file_and_names_the_setting(tmp_path: Path) -> None:
    # Prepare: two sites, same plan text, different initial model files
    mine = load_plan(_site(tmp_path, "a", b"model one"))
    same = load_plan(_site(tmp_path, "b", b"model one"))
    theirs = load_plan(_site(tmp_path, "c", b"model two"))
    # Execute
    lines = describe_differences(plan_fingerprint(mine), plan_fingerprint(theirs),
                                 where="collaborator col2")
    # Assert
    assert plan_digest(mine) == plan_digest(same)
    assert plan_digest(mine) != plan_digest(theirs)
    assert len(lines) == 1
    assert lines[0].startswith(f"{MODEL_FILE_KEY}: ")
    assert lines[0].endswith("at collaborator col2")


def test_a_missing_model_file_adds_no_hash(tmp_path: Path) -> None:
    plan = load_plan(_site(tmp_path, "a", None))
    fingerprint = plan_fingerprint(plan)
    assert MODEL_FILE_KEY not in fingerprint
    assert fingerprint["task_runner.params.model"] == '"models/init.keras"'
