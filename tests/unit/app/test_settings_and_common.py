"""The composition root's small pieces: plan -> transport settings, addresses, process locks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from openfl_like.app.common import Workspace, parse_address
from openfl_like.app.locks import ProcessLock
from openfl_like.app.settings import _PLAN_TO_TRANSPORT, transport_mapping, transport_settings
from openfl_like.core.errors import ConfigError, FederationError
from openfl_like.plan import registry as plan_registry
from openfl_like.plan.load import load_plan
from openfl_like.transport.settings import TransportSettings

PLANS = Path(__file__).resolve().parents[3] / "plans"


def _plan_with_network(tmp_path: Path, network_yaml: str) -> Path:
    plan_dir = tmp_path / "plan"
    shutil.copytree(PLANS / "numpy_digits", plan_dir)
    text = (plan_dir / "plan.yaml").read_text()
    head, _, _ = text.partition("\nnetwork:")
    (plan_dir / "plan.yaml").write_text(head + "\nnetwork:\n" + network_yaml)
    return plan_dir


def test_every_plan_network_key_reaches_the_transport() -> None:
    # Prepare: a value for every key the plan accepts
    assert set(_PLAN_TO_TRANSPORT) == set(plan_registry.NETWORK_KEYS)
    values = {"tls": False, "chunk_size_bytes": 1 << 20, "max_message_bytes": 3 << 20,
              "max_model_bytes": 1 << 30, "keepalive_seconds": 7.0,
              "keepalive_timeout_seconds": 3.0, "rpc_timeout_seconds": 9.0,
              "long_poll_seconds": 4.0, "retry_initial_seconds": 0.2,
              "retry_max_seconds": 2.0, "retry_total_seconds": 20.0, "client_role": "envoy"}
    # Execute
    settings = TransportSettings.from_mapping(transport_mapping(values), env={})
    # Assert
    assert (settings.tls, settings.chunk_size, settings.max_message_bytes) == (
        False, 1 << 20, 3 << 20)
    assert settings.max_model_bytes == 1 << 30
    assert (settings.keepalive.time_seconds, settings.keepalive.timeout_seconds) == (7.0, 3.0)
    assert (settings.rpc_timeout_seconds, settings.long_poll_seconds) == (9.0, 4.0)
    assert (settings.retry.initial_backoff_seconds, settings.retry.max_backoff_seconds,
            settings.retry.total_seconds) == (0.2, 2.0, 20.0)
    assert settings.client_role == "envoy"


def test_plan_network_section_and_environment_override(tmp_path: Path) -> None:
    plan = load_plan(_plan_with_network(tmp_path, "  long_poll_seconds: 5\n  tls: true\n"))
    assert transport_settings(plan, env={}).long_poll_seconds == 5.0
    overridden = transport_settings(plan, env={"FX_LONG_POLL_SECONDS": "2", "FX_TLS": "0"})
    assert overridden.long_poll_seconds == 2.0
    assert overridden.tls is False


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:50051", ("127.0.0.1", 50051)),
    ("agg.example.org:1", ("agg.example.org", 1)),
    ("[::1]:8080", ("::1", 8080)),
])
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["localhost", ":50051", "host:", "host:0", "host:70000", "h:x"])
def test_parse_address_refuses_malformed(text: str) -> None:
    with pytest.raises(ConfigError, match="HOST:PORT"):
        parse_address(text)


def test_workspace_paths_follow_plan_or_override(tmp_path: Path) -> None:
    plan = load_plan(PLANS / "numpy_digits")
    assert Workspace.for_plan(plan).root == (PLANS / "numpy_digits" / "workspace").resolve()
    ws = Workspace.for_plan(plan, tmp_path / "w")
    assert ws.state_dir == tmp_path / "w" / "state"
    assert ws.status_path.name == "status.json"


def test_process_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    path = tmp_path / "locks" / "col1.lock"
    with ProcessLock(path, "collaborator 'col1'"), pytest.raises(
        FederationError, match="already running"
    ):
        ProcessLock(path, "collaborator 'col1'").acquire()
    # released: a new holder gets it
    ProcessLock(path, "collaborator 'col1'").acquire().release()
