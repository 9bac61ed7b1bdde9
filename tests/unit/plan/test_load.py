"""Plan loading: the ready plans load; every kind of mistake is named with file, key and why."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from openfl_like.core.errors import PlanError
from openfl_like.core.messages import TaskKind
from openfl_like.plan import (
    describe_differences,
    import_custom_object,
    load_plan,
    plan_digest,
    plan_fingerprint,
    plan_to_dict,
)
from openfl_like.plan.registry import KNOWN_RUNNERS, NETWORK_CHOICES, NETWORK_KEYS
from openfl_like.transport.settings import CLIENT_ROLES

PLANS = Path(__file__).resolve().parents[3] / "plans"


def _write(tmp_path: Path, plan: Any, cols: Any = None, data: Any = None) -> Path:
    folder = tmp_path / "p"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plan.yaml").write_text(plan if isinstance(plan, str) else yaml.safe_dump(plan))
    (folder / "cols.yaml").write_text(yaml.safe_dump(
        cols if cols is not None else {"collaborators": ["col1", "col2", "col3"]}))
    (folder / "data.yaml").write_text(yaml.safe_dump(
        data if data is not None else {"col1": 0, "col2": 1, "col3": 2}))
    return folder


@pytest.mark.parametrize("name", ["keras_digits", "numpy_digits", "noop_bench"])
def test_ready_plans_load(name: str) -> None:
    plan = load_plan(PLANS / name)
    assert plan.collaborators[0] == "col1"
    assert plan.network["tls"] is True
    assert plan.task_runner.name in KNOWN_RUNNERS
    assert plan_digest(plan) == plan_digest(load_plan(PLANS / name))
    assert len(plan.federation_uuid) == 36


def test_zero_rounds_means_validation_only(tmp_path: Path) -> None:
    # Prepare / Execute: a director's validate experiment (round 0 is the final round).
    plan = load_plan(_write(tmp_path, {"aggregator": {"rounds_to_train": 0}}))
    # Assert
    assert plan.aggregator.rounds_to_train == 0
    assert TaskKind.VALIDATE_GLOBAL in plan.tasks


def test_keras_plan_settings() -> None:
    plan = load_plan(PLANS / "keras_digits")
    assert plan.aggregator.rounds_to_train == 10
    assert plan.collaborators == ("col1", "col2", "col3")
    assert plan.shard_for("col2") == 1
    assert plan.stragglers.min_collaborators == 2 and plan.stragglers.enabled
    assert plan.task_runner.params["builder"] == "digits_cnn"
    assert plan.tasks == (TaskKind.VALIDATE_GLOBAL, TaskKind.TRAIN, TaskKind.VALIDATE_LOCAL)
    assert plan.state_dir == PLANS.resolve() / "keras_digits" / "workspace" / "state"


def test_defaults_for_an_almost_empty_plan(tmp_path: Path) -> None:
    plan = load_plan(_write(tmp_path, {"task_runner": {"name": "noop"}}))
    assert plan.aggregator.name == "aggregator" and plan.aggregator.rounds_to_train == 10
    assert plan.aggregation.name == "fedavg" and plan.mode.name == "sync"
    assert plan.stragglers.enabled and plan.stragglers.min_collaborators == 2  # majority of 3
    assert plan.data.num_shards == 3
    assert plan.task_runner.allow_custom_objects is False
    assert dict(plan.network) == {"tls": True}


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ({"aggregator": {"rounds_to_train": 0}, "tasks": ["train"]},
         "plan.yaml: aggregator.rounds_to_train: must be > 0 (got 0; 0 means validation only"),
        ({"aggregator": {"rounds_to_train": -1}},
         "plan.yaml: aggregator.rounds_to_train: must be >= 0 (got -1)"),
        ({"aggregator": {"rounds_to_trian": 3}}, "plan.yaml: aggregator.rounds_to_trian: unknown"),
        ({"agregator": {}}, "plan.yaml: agregator: unknown key (did you mean aggregator?)"),
        ({"aggregator": {"port": "x"}}, "aggregator.port: must be an integer (got 'x')"),
        ({"aggregator": {"port": True}}, "aggregator.port: must be an integer"),
        ({"aggregator": {"best_model": {"direction": "up"}}},
         "aggregator.best_model.direction: must be one of max, min"),
        ({"collaborator": {"batch_size": -1}}, "collaborator.batch_size: must be > 0"),
        ({"data": {"split": "random"}}, "data.split: must be one of iid, dirichlet"),
        ({"data": {"test_fraction": 1.0}}, "data.test_fraction: must be < 1"),
        ({"task_runner": {"name": "torch"}}, "task_runner.name: must be one of"),
        ({"task_runner": {"name": "evil.module:build"}},
         "task_runner.name: 'evil.module:build' is a custom object"),
        ({"task_runner": {"params": {"builder": "os:system"}}},
         "task_runner.params.builder: 'os:system' is a custom object"),
        ({"task_runner": {"params": {"layers": [1, 2]}}},
         "task_runner.params.layers: must be a string, number or boolean"),
        ({"tasks": ["train", "dance"]}, "tasks[1]: must be one of"),
        ({"tasks": ["aggregated_model_validation"]}, "tasks: must include train"),
        ({"aggregation": {"name": "fedavg", "trim_fraction": 0.1}},
         "aggregation.trim_fraction: does not apply to aggregation 'fedavg'"),
        ({"aggregation": {"name": "fedopt", "optimizer": "sgd"}},
         "aggregation.optimizer: must be one of adam, yogi"),
        ({"stragglers": {"min_collaborators": 4}},
         "stragglers.min_collaborators: must be <= the 3 collaborators of cols.yaml (got 4)"),
        ({"stragglers": {"on_deadline_without_quorum": "retry"}},
         "stragglers.on_deadline_without_quorum: must be one of wait, fail"),
        ({"mode": {"buffer_size": 3}}, "mode.buffer_size: applies to mode 'async' only"),
        ({"mode": {"name": "async"}, "aggregation": {"name": "median"}},
         "plan.yaml: aggregation.name: 'median' cannot be used with mode 'async'"),
        ({"mode": {"name": "async"}, "aggregation": {"name": "trimmed_mean"}},
         "aggregation.name: 'trimmed_mean' cannot be used with mode 'async'"),
        ({"mode": {"name": "async"}, "aggregation": {"name": "fedopt"}},
         "aggregation.name: 'fedopt' cannot be used with mode 'async'"),
        ({"network": {"chunk_size": 5}},
         "network.chunk_size: unknown key (did you mean chunk_size_bytes?)"),
        ({"task_runner": {"name": "keras", "params": {"learnin_rate": 0.1}}},
         "plan.yaml: task_runner.params.learnin_rate: unknown key (did you mean "
         "learning_rate?); see docs/plan_reference.md"),
        ({"task_runner": {"name": "numpy", "params": {"builder": "digits_cnn"}}},
         "task_runner.params.builder: unknown key (known: hidden_units, input_dim, "
         "learning_rate, model, momentum, num_classes, optimizer)"),
        ({"task_runner": {"name": "noop", "params": {"seed": 3}}},
         "task_runner.params.seed: unknown key"),
        ({"task_runner": {"name": "keras", "params": {"plan_dir": "/elsewhere"}}},
         "task_runner.params.plan_dir: is set by fx for the 'keras' runner, not by the plan"),
        ({"mode": {"name": "sync", "bufer_size": 3}},
         "mode.bufer_size: unknown key (did you mean buffer_size?)"),
        ({"aggregator": {"rounds": 3}}, "aggregator.rounds: unknown key (did you mean "
         "rounds_to_train?)"),
        ({"stragglers": {"zzzz": 1}}, "stragglers.zzzz: unknown key (known: enabled, "
         "liveness_timeout_seconds, min_collaborators, on_deadline_without_quorum, "
         "round_deadline_seconds)"),
        ({"network": {"tls": "yes"}}, "network.tls: must be true or false"),
        ({"network": {"long_poll_seconds": 0}}, "network.long_poll_seconds: must be > 0"),
        ({"federation": {"federation_uuid": "abc"}}, "federation.federation_uuid: must be a UUID"),
        ({"aggregator": {"name": "col1"}}, "aggregator.name: must differ"),
        (["not", "a", "mapping"], "plan.yaml: must be a mapping (got list)"),
    ],
)
def test_plan_errors_name_file_key_and_expectation(tmp_path: Path, plan: Any,
                                                   message: str) -> None:
    with pytest.raises(PlanError) as info:
        load_plan(_write(tmp_path, plan))
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("cols", "data", "message"),
    [
        ({"collaborators": []}, None, "cols.yaml: collaborators: must be a non-empty list"),
        ({"collaborators": ["col1", "col1"]}, {"col1": 0}, "collaborators[1]: duplicate"),
        ({"collaborators": ["../etc"]}, {}, "cols.yaml: collaborators[0]: invalid"),
        ({"collaborators": ["col1"], "extra": 1}, {}, "cols.yaml: extra: unknown key"),
        ({"collaborators": ["col1"]}, {"col9": 0}, "data.yaml: col9: not a collaborator"),
        ({"collaborators": ["col1"]}, {"col1": -1}, "data.yaml: col1: must be >= 0"),
    ],
)
def test_cols_and_data_errors(tmp_path: Path, cols: Any, data: Any, message: str) -> None:
    with pytest.raises(PlanError) as info:
        load_plan(_write(tmp_path, {"stragglers": {"min_collaborators": 1}}, cols, data))
    assert message in str(info.value)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    folder = _write(tmp_path, {})
    (folder / "data.yaml").unlink()
    with pytest.raises(PlanError, match=r"data\.yaml: not found"):
        load_plan(folder)
    folder = _write(tmp_path, "aggregator: [unclosed\n")
    with pytest.raises(PlanError, match=r"plan.yaml: invalid YAML at line \d+"):
        load_plan(folder)
    with pytest.raises(PlanError, match="not a plan folder"):
        load_plan(tmp_path / "nowhere")


def test_no_yaml_tag_can_build_objects(tmp_path: Path) -> None:
    folder = _write(tmp_path, "aggregator: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(PlanError, match="invalid YAML"):
        load_plan(folder)


def test_custom_objects_need_plan_and_operator_consent(tmp_path: Path) -> None:
    plan = load_plan(_write(tmp_path, {"task_runner": {
        "name": "keras", "allow_custom_objects": True, "params": {"builder": "json:dumps"}}}))
    assert plan.task_runner.params["builder"] == "json:dumps"  # accepted, not imported
    with pytest.raises(PlanError, match="operator must allow"):
        import_custom_object("json:dumps", plan_allows=True, allow_custom=False)
    with pytest.raises(PlanError, match="allow_custom_objects: must be true"):
        import_custom_object("json:dumps", plan_allows=False, allow_custom=True)
    import json

    assert import_custom_object("json:dumps", plan_allows=True, allow_custom=True) is json.dumps


def test_loading_imports_nothing(tmp_path: Path) -> None:
    name = "openfl_like_never_imported_module"
    load_plan(_write(tmp_path, {"task_runner": {
        "name": "keras", "allow_custom_objects": True, "params": {"builder": f"{name}:x"}}}))
    assert name not in sys.modules


def test_network_keys_pass_through(tmp_path: Path) -> None:
    values = {k: (True if t is bool else 3 if t is int else "envoy" if t is str else 1.5)
              for k, t in NETWORK_KEYS.items()}
    plan = load_plan(_write(tmp_path, {"network": values}))
    assert dict(plan.network) == values


def test_network_client_role_is_checked(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match=r"network\.client_role: must be one of collaborator, "
                       r"envoy \(got 'director'\)"):
        load_plan(_write(tmp_path, {"network": {"client_role": "director"}}))
    assert NETWORK_CHOICES["client_role"] == CLIENT_ROLES


def test_fingerprint_and_differences(tmp_path: Path) -> None:
    mine = load_plan(_write(tmp_path / "a", {"aggregator": {"rounds_to_train": 10}}))
    theirs = load_plan(_write(tmp_path / "b", {"aggregator": {"rounds_to_train": 5}}))
    lines = describe_differences(plan_fingerprint(mine), plan_fingerprint(theirs),
                                 where="collaborator col2")
    assert "aggregator.rounds_to_train: 10 here, 5 at collaborator col2" in lines
    assert any(line.startswith("federation.federation_uuid:") for line in lines)
    assert plan_digest(mine) != plan_digest(theirs)
    assert mine.federation_uuid != theirs.federation_uuid


def test_site_local_settings_do_not_change_the_digest(tmp_path: Path) -> None:
    a = load_plan(_write(tmp_path / "a", {"aggregator": {"host": "0.0.0.0"},
                                          "network": {"long_poll_seconds": 5}}))
    b = load_plan(_write(tmp_path / "b", {"aggregator": {"host": "agg.example.org",
                                                         "workspace": "/tmp/w"}}))
    assert plan_digest(a) == plan_digest(b)
    assert a.federation_uuid == b.federation_uuid
    assert plan_to_dict(a)["aggregator"]["host"] == "0.0.0.0"


def test_explicit_federation_uuid_is_kept(tmp_path: Path) -> None:
    given = "12345678-1234-5678-1234-567812345678"
    plan = load_plan(_write(tmp_path, {"federation": {"federation_uuid": given}}))
    assert plan.federation_uuid == given
