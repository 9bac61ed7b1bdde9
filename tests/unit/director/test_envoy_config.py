"""envoy.yaml: {name} substitution, defaults, and errors that name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from openfl_like.core.errors import PlanError
from openfl_like.plan.envoy_config import load_envoy_config
from tests.unit.director.envoy_fakes import write_site


def test_one_file_serves_several_envoys(tmp_path: Path) -> None:
    path = write_site(tmp_path)
    one, two = load_envoy_config(path, "site1"), load_envoy_config(path, "site2")
    assert one.workspace == (tmp_path / "ws" / "site1").resolve()
    assert two.data_file == (tmp_path / "data" / "site2.yaml").resolve()
    assert one.description == "test site site1"
    assert one.max_experiment_bytes == 1 << 20
    assert one.director.host == "127.0.0.1" and one.director.port == 50060
    assert one.director.federation == "fed1" and one.network["tls"] is False
    assert one.contract.features == (4,) and one.contract.classes == ("a", "b")
    assert one.socket_path == one.workspace / "envoy.sock"


def _edit(path: Path, dotted: str, value: object) -> None:
    doc = yaml.safe_load(path.read_text())
    node = doc
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node[key]
    node[leaf] = value
    path.write_text(yaml.safe_dump(doc))


@pytest.mark.parametrize(("dotted", "value", "message"), [
    ("envoy.director.port", 70000, "envoy.director.port: must be <= 65535"),
    ("envoy.director.hots", "x", "envoy.director.hots: unknown key"),
    ("envoy.max_experiment_bytes", "lots", "envoy.max_experiment_bytes: must be a size"),
    ("envoy.review_experiments", "yes", "envoy.review_experiments: must be true or false"),
    ("envoy.workspace", "ws/{site}", "envoy.workspace: only {name} may be substituted"),
    ("contract.dtype", "int8", "contract.dtype: must be one of"),
    ("network.tsl", True, "network.tsl: unknown key"),
    ("datta", "x", "datta: unknown key"),
])
def test_errors_name_the_file_and_the_key(tmp_path: Path, dotted: str, value: object,
                                          message: str) -> None:
    path = write_site(tmp_path)
    _edit(path, dotted, value)
    with pytest.raises(PlanError) as info:
        load_envoy_config(path, "site1")
    assert info.value.message.startswith(f"{path}: {message}"), info.value.message


def test_missing_file_bad_yaml_and_bad_name(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="envoy configuration not found"):
        load_envoy_config(tmp_path / "none.yaml", "site1")
    bad = tmp_path / "bad.yaml"
    bad.write_text("envoy: [unclosed\n")
    with pytest.raises(PlanError, match="invalid YAML at line"):
        load_envoy_config(bad, "site1")
    path = write_site(tmp_path)
    with pytest.raises(PlanError, match="invalid envoy name"):
        load_envoy_config(path, "../x")
    _edit(path, "contract", None)
    with pytest.raises(PlanError, match="contract: is required"):
        load_envoy_config(path, "site1")
