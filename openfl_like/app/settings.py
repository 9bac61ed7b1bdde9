"""Plan -> transport settings: the plan's flat `network` keys mapped onto TransportSettings."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from openfl_like.plan.schema import Plan
from openfl_like.transport.settings import TransportSettings

# plan.yaml `network` key -> (TransportSettings section or "", field name)
_PLAN_TO_TRANSPORT: dict[str, tuple[str, str]] = {
    "tls": ("", "tls"),
    "chunk_size_bytes": ("", "chunk_size"),
    "max_message_bytes": ("", "max_message_bytes"),
    "max_model_bytes": ("", "max_model_bytes"),
    "rpc_timeout_seconds": ("", "rpc_timeout_seconds"),
    "long_poll_seconds": ("", "long_poll_seconds"),
    "keepalive_seconds": ("keepalive", "time_seconds"),
    "keepalive_timeout_seconds": ("keepalive", "timeout_seconds"),
    "retry_initial_seconds": ("retry", "initial_backoff_seconds"),
    "retry_max_seconds": ("retry", "max_backoff_seconds"),
    "retry_total_seconds": ("retry", "total_seconds"),
    "client_role": ("", "client_role"),
    "metrics_port": ("", "metrics_port"),
    "metrics_host": ("", "metrics_host"),
}


def transport_mapping(network: Mapping[str, Any]) -> dict[str, Any]:
    """The nested mapping TransportSettings.from_mapping reads, from the plan's flat keys."""
    out: dict[str, Any] = {"keepalive": {}, "retry": {}}
    for key, value in network.items():
        section, name = _PLAN_TO_TRANSPORT[key]
        (out[section] if section else out)[name] = value
    return out


def transport_settings(
    plan: Plan, *, env: Mapping[str, str] | None = os.environ
) -> TransportSettings:
    """The plan's network settings with FX_* environment overrides applied."""
    return TransportSettings.from_mapping(transport_mapping(plan.network), env=env)
