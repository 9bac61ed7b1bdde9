"""director.yaml: defaults, sizes, and errors that name the file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from openfl_like.core.errors import PlanError
from openfl_like.plan.director_config import load_director_config


def _write(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "director.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_defaults_and_values(tmp_path: Path) -> None:
    config = load_director_config(_write(tmp_path, {
        "director": {"name": "dir1", "max_package_bytes": "2MiB", "envoys": ["site_a"],
                     "aggregator_ports": [52000, 52001], "public_host": "fl.example"},
        "network": {"tls": False}}))
    d = config.director
    assert d.name == "dir1" and d.max_package_bytes == 2 << 20
    assert d.workspace == (tmp_path / "workspace").resolve()
    assert d.aggregator_ports == (52000, 52001) and d.aggregator_host == "fl.example"
    assert d.envoys == ("site_a",) and d.heartbeat_seconds == 5.0
    assert config.network["tls"] is False


@pytest.mark.parametrize(("doc", "message"), [
    ({"director": {"heartbeat_seconds": 0}}, "director.yaml: director.heartbeat_seconds: must"),
    ({"director": {"aggregator_ports": [5, 1]}}, "director.aggregator_ports: must be"),
    ({"director": {"max_package_bytes": "lots"}}, "director.max_package_bytes: must be a size"),
    ({"director": {"envoys": ["../x"]}}, r"director.envoys\[0\]: invalid name"),
    ({"director": {"prot": 1}}, "director.prot: unknown key"),
    ({"network": {"tsl": True}}, "network.tsl: unknown key"),
    ({"director": {"port": 50100}}, "director.port: 50100 lies inside aggregator_ports"),
])
def test_errors_name_file_and_key(tmp_path: Path, doc: object, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        load_director_config(_write(tmp_path, doc))
