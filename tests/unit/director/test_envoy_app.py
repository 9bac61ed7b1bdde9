"""app.envoy wiring: the DirectorClient is built from envoy.yaml and the envoy's certificate
(a stand-in module replaces openfl_like.transport.director_client here)."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

from openfl_like.app.envoy import start_envoy
from openfl_like.core.errors import ConfigError, PermissionDeniedError
from openfl_like.plan.envoy_config import load_envoy_config
from tests.unit.director.envoy_fakes import FakeDirector, write_site

CLIENT_MODULE = "openfl_like.transport.director_client"


class StandInClient(FakeDirector):
    instances: list[StandInClient] = []  # noqa: RUF012

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        self.kwargs = kwargs
        self.closed = False
        StandInClient.instances.append(self)

    def __enter__(self) -> StandInClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.closed = True


@pytest.fixture
def client_module(monkeypatch: pytest.MonkeyPatch) -> type[StandInClient]:
    module = types.ModuleType(CLIENT_MODULE)
    module.DirectorClient = StandInClient  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, CLIENT_MODULE, module)
    StandInClient.instances = []
    return StandInClient


def test_start_envoy_wires_the_client_and_stops(tmp_path: Path,
                                                client_module: type[StandInClient]) -> None:
    config = load_envoy_config(write_site(tmp_path), "site1")
    running = start_envoy(config, "site1", pki_dir=tmp_path / "pki")
    try:
        client = client_module.instances[0]
        client.wait_for(lambda: client.shards and client.statuses, what="registration")
        assert client.kwargs["host"] == "127.0.0.1" and client.kwargs["port"] == 50060
        assert client.kwargs["name"] == "site1" and client.kwargs["director_name"] == "director"
        assert client.kwargs["federation_uuid"] == "fed1"
        assert client.kwargs["tls_files"] is None  # network.tls: false in this config
        assert client.kwargs["settings"].tls is False
        assert dict(client.shards[0].sample_counts) == {"train": 30, "valid": 6}
    finally:
        running.stop(timeout=20)
    assert client.closed and not running.thread.is_alive()


def test_tls_needs_the_envoy_certificate(tmp_path: Path,
                                         client_module: type[StandInClient]) -> None:
    path = write_site(tmp_path)
    path.write_text(path.read_text().replace("tls: false", "tls: true"))
    config = load_envoy_config(path, "site1")
    with pytest.raises(ConfigError, match=r"cannot read certificate .*site1"):
        start_envoy(config, "site1", pki_dir=tmp_path / "pki")
    assert client_module.instances == []


def test_a_refusal_by_the_director_ends_the_envoy_with_that_error(
        tmp_path: Path, client_module: type[StandInClient]) -> None:
    class Refusing(StandInClient):
        def wait_experiment(self, wait_seconds: float) -> Any:
            raise PermissionDeniedError("site1 is not an envoy of this federation")

    module = sys.modules[CLIENT_MODULE]
    module.DirectorClient = Refusing  # type: ignore[attr-defined]
    config = load_envoy_config(write_site(tmp_path), "site1")
    running = start_envoy(config, "site1", pki_dir=tmp_path / "pki")
    with pytest.raises(PermissionDeniedError, match="not an envoy"):
        running.wait(timeout=20)
