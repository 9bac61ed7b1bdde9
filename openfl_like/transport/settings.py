"""Transport settings: the plan's ``network`` section, with environment overrides for operators.

``TransportSettings.from_mapping(plan["network"])`` reads the section (nested ``keepalive:`` and
``retry:`` blocks or the flat keys below); ``.with_env()`` (applied by ``from_mapping`` unless
``env=None``) lets operators override without editing the plan. Sizes accept integers or
``"4MiB"``/``"64MB"``/``"1GiB"``; booleans accept true/false/1/0/yes/no/on/off.

=================================  ================================  =========================
environment variable               setting                           default
=================================  ================================  =========================
``FX_TLS``                         ``tls``                           true (mutual TLS)
``FX_CHUNK_SIZE``                  ``chunk_size``                    4 MiB
``FX_MAX_MESSAGE_BYTES``           ``max_message_bytes``             chunk_size + 1 MiB
``FX_MAX_TENSOR_BYTES``            ``max_tensor_bytes``              0 (no limit)
``FX_MAX_MODEL_BYTES``             ``max_model_bytes``               0 (no limit)
``FX_KEEPALIVE_SECONDS``           ``keepalive.time_seconds``        30
``FX_KEEPALIVE_TIMEOUT_SECONDS``   ``keepalive.timeout_seconds``     10
``FX_KEEPALIVE_WITHOUT_CALLS``     ``keepalive.permit_without_calls`` true
``FX_RPC_TIMEOUT``                 ``rpc_timeout_seconds``           30 (unary calls)
``FX_STREAM_TIMEOUT``              ``stream_timeout_seconds``        3600 (tensor streams)
``FX_LONG_POLL_SECONDS``           ``long_poll_seconds``             30
``FX_LONG_POLL_SLICE_SECONDS``     ``long_poll_slice_seconds``       1 (abandoned-poll check)
``FX_SERVER_WORKERS``              ``server_workers``                1280 (see below)
``FX_INSTANCE_TAKEOVER_SECONDS``   ``instance_takeover_seconds``     30 (second process, same cert)
``FX_FIRST_MESSAGE_SECONDS``       ``first_message_seconds``         10 (upload's first message)
``FX_MAX_STREAMS_PER_PEER``        ``max_streams_per_peer``          4 (uploads + downloads)
``FX_MAX_POLLS_PER_PEER``          ``max_polls_per_peer``            2 (parked GetTasks)
``FX_MAX_TENSOR_NAMES``            ``max_tensor_names_per_request``  10000 (one download)
``FX_INLINE_MODEL_BYTES``          ``inline_model_bytes``            1048576 (model in task reply)
``FX_RETRY_INITIAL_SECONDS``       ``retry.initial_backoff_seconds`` 0.5
``FX_RETRY_MAX_SECONDS``           ``retry.max_backoff_seconds``     10
``FX_RETRY_MULTIPLIER``            ``retry.multiplier``              2
``FX_RETRY_TOTAL_SECONDS``         ``retry.total_seconds``           300
``FX_TLS_TARGET_NAME_OVERRIDE``    ``target_name_override``          "" (verify the real host)
``FX_CLIENT_ROLE``                 ``client_role``                   collaborator (see below)
``FX_METRICS_PORT``                ``metrics_port``                  0 (off; see below)
``FX_METRICS_HOST``                ``metrics_host``                  127.0.0.1
=================================  ================================  =========================

``metrics_port`` (plan key ``network.metrics_port``, or ``--metrics-port``) turns on a plain HTTP
port serving ``/metrics`` (Prometheus), ``/healthz`` and ``/readyz`` (``transport.http_ops``); 0
leaves it off. It is unauthenticated and listens on ``metrics_host``, 127.0.0.1 unless told
otherwise (another address is logged as a warning). ``network`` is a site-local section of the
plan: each host's copy may set its own port; processes sharing one host need one port each.

``client_role`` is the certificate role an aggregator accepts from its clients: ``collaborator``,
or ``envoy`` for an aggregator a director starts, whose collaborators are envoys running under
their envoy certificates (plan key ``network.client_role``).

``server_workers`` must exceed the number of collaborators: the synchronous server parks one
worker thread per waiting GetTasks, and once every worker is parked all other calls (uploads,
heartbeats) queue behind them until a poll returns. Workers are started only when needed.

Turning TLS off (``tls: false`` / ``FX_TLS=0``) is for local experiments only: the server then
cannot prove who calls and trusts the header's sender; servers and clients log a warning saying
so on every start.

Hostile clients: an upload whose first message does not arrive within ``first_message_seconds``
ends with DEADLINE_EXCEEDED and frees its worker; one certificate holds at most
``max_streams_per_peer`` tensor streams and ``max_polls_per_peer`` long-polls at once (more get
RESOURCE_EXHAUSTED, which clients retry with backoff); a download names at most
``max_tensor_names_per_request`` tensors, each once.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from openfl_like.core.errors import ConfigError

MIB = 1024 * 1024
_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4,
          "ki": 1024, "mi": 1024**2, "gi": 1024**3, "ti": 1024**4}  # fmt: skip


@dataclass(frozen=True)
class KeepaliveSettings:
    """HTTP/2 pings that keep NAT/firewall state alive and detect a dead peer."""

    time_seconds: float = 30.0
    timeout_seconds: float = 10.0
    permit_without_calls: bool = True


@dataclass(frozen=True)
class RetrySettings:
    """Exponential backoff with full jitter, capped per wait, bounded by a total deadline."""

    initial_backoff_seconds: float = 0.5
    max_backoff_seconds: float = 10.0
    multiplier: float = 2.0
    total_seconds: float = 300.0


@dataclass(frozen=True)
class TransportSettings:
    tls: bool = True
    chunk_size: int = 4 * MIB
    max_message_bytes: int = 0  # 0: chunk_size + 1 MiB (room for headers)
    max_tensor_bytes: int = 0  # 0: no limit
    max_model_bytes: int = 0  # 0: no limit (per stream)
    rpc_timeout_seconds: float = 30.0
    stream_timeout_seconds: float = 3600.0
    long_poll_seconds: float = 30.0
    # a parked GetTasks re-checks that its caller is still there this often (see the servicer)
    long_poll_slice_seconds: float = 1.0
    # a second process with the same certificate is refused while the first made a call this
    # recently; after that it may take the name over (a restart after a crash)
    instance_takeover_seconds: float = 30.0
    # one thread per parked long-poll (1024 collaborators) + 256 for everything else; threads
    # are started on demand, ~40 KB RSS each (bench/bench_longpoll.py)
    server_workers: int = 1280
    # an upload must send its first message (header + result) this soon after opening
    first_message_seconds: float = 10.0
    # per peer certificate (per name without TLS): concurrent tensor streams and long-polls
    max_streams_per_peer: int = 4
    max_polls_per_peer: int = 2
    # names in one GetAggregatedTensors request: a small request must not fan out into many
    # copies of the model
    max_tensor_names_per_request: int = 10000
    # a global model up to this size rides in the GetTasks reply that hands out a round's work,
    # so the round needs no download call (0: always a separate download)
    inline_model_bytes: int = MIB
    target_name_override: str = ""
    # the certificate role the aggregator accepts from its clients (CLIENT_ROLES)
    client_role: str = "collaborator"
    # the operations HTTP port (/metrics, /healthz, /readyz): 0 = off; and where it listens
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    keepalive: KeepaliveSettings = field(default_factory=KeepaliveSettings)
    retry: RetrySettings = field(default_factory=RetrySettings)

    def __post_init__(self) -> None:
        if self.chunk_size <= 0:
            raise ConfigError(f"network.chunk_size: must be > 0, got {self.chunk_size}")
        if self.max_message_bytes == 0:
            object.__setattr__(self, "max_message_bytes", self.chunk_size + MIB)
        if self.max_message_bytes <= self.chunk_size:
            raise ConfigError(
                f"network.max_message_bytes ({self.max_message_bytes}) must exceed "
                f"chunk_size ({self.chunk_size})"
            )
        for name in ("rpc_timeout_seconds", "stream_timeout_seconds", "long_poll_seconds",
                     "long_poll_slice_seconds", "first_message_seconds"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"network.{name}: must be > 0")
        for name in ("server_workers", "max_streams_per_peer", "max_polls_per_peer",
                     "max_tensor_names_per_request"):
            if getattr(self, name) < 1:
                raise ConfigError(f"network.{name}: must be >= 1")
        if not 0 <= self.inline_model_bytes < self.max_message_bytes - 64 * 1024:
            raise ConfigError(
                f"network.inline_model_bytes ({self.inline_model_bytes}) must be >= 0 and "
                f"leave room in max_message_bytes ({self.max_message_bytes})"
            )
        if self.client_role not in CLIENT_ROLES:
            raise ConfigError(
                f"network.client_role: must be one of {', '.join(CLIENT_ROLES)}, "
                f"got {self.client_role!r}"
            )
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigError(f"network.metrics_port: must be 0 (off) to 65535, got "
                              f"{self.metrics_port}")
        if not self.metrics_host.strip():
            raise ConfigError("network.metrics_host: must not be empty")
        if self.retry.initial_backoff_seconds <= 0 or self.retry.multiplier < 1:
            raise ConfigError("network.retry: initial_backoff_seconds > 0 and multiplier >= 1")

    @classmethod
    def from_mapping(
        cls, section: Mapping[str, Any] | None, *, env: Mapping[str, str] | None = os.environ
    ) -> TransportSettings:
        """Build from the plan's ``network`` section; unknown keys are an error naming them.

        Address keys (``agg_addr``, ``agg_port``, ``host``, ``port``, ``address``) belong to the
        caller and are ignored here. ``use_tls`` is accepted as an alias of ``tls``.
        """
        data = dict(section or {})
        for key in _ADDRESS_KEYS:
            data.pop(key, None)
        if "use_tls" in data:
            data["tls"] = data.pop("use_tls")
        nested = {"keepalive": KeepaliveSettings, "retry": RetrySettings}
        kwargs: dict[str, Any] = {}
        for name, sub_cls in nested.items():
            sub = data.pop(name, None) or {}
            if not isinstance(sub, Mapping):
                raise ConfigError(f"network.{name}: expected a mapping")
            kwargs[name] = _build(sub_cls, sub, f"network.{name}")
        kwargs.update(_convert_all(cls, data, "network"))
        settings = cls(**kwargs)
        return settings.with_env(env) if env is not None else settings

    def with_env(self, env: Mapping[str, str] = os.environ) -> TransportSettings:
        """These settings with any ``FX_*`` overrides from ``env`` applied."""
        top: dict[str, Any] = {}
        subs: dict[str, dict[str, Any]] = {"keepalive": {}, "retry": {}}
        for var, path in ENV_VARS.items():
            if var not in env:
                continue
            owner, _, name = path.rpartition(".")
            target_cls = {"": TransportSettings, "keepalive": KeepaliveSettings,
                          "retry": RetrySettings}[owner]  # fmt: skip
            value = _convert(target_cls, name, env[var], var)
            (subs[owner] if owner else top)[name] = value
        if not top and not any(subs.values()):
            return self
        if "chunk_size" in top and "max_message_bytes" not in top:
            top["max_message_bytes"] = 0  # re-derive from the new chunk size
        return dataclasses.replace(
            self,
            keepalive=dataclasses.replace(self.keepalive, **subs["keepalive"]),
            retry=dataclasses.replace(self.retry, **subs["retry"]),
            **top,
        )

    @property
    def max_receive_bytes(self) -> int:
        """gRPC's per-message limit: just above one chunk, since everything large is streamed."""
        return self.max_message_bytes


ENV_VARS: dict[str, str] = {
    "FX_TLS": "tls",
    "FX_CHUNK_SIZE": "chunk_size",
    "FX_MAX_MESSAGE_BYTES": "max_message_bytes",
    "FX_MAX_TENSOR_BYTES": "max_tensor_bytes",
    "FX_MAX_MODEL_BYTES": "max_model_bytes",
    "FX_KEEPALIVE_SECONDS": "keepalive.time_seconds",
    "FX_KEEPALIVE_TIMEOUT_SECONDS": "keepalive.timeout_seconds",
    "FX_KEEPALIVE_WITHOUT_CALLS": "keepalive.permit_without_calls",
    "FX_RPC_TIMEOUT": "rpc_timeout_seconds",
    "FX_STREAM_TIMEOUT": "stream_timeout_seconds",
    "FX_LONG_POLL_SECONDS": "long_poll_seconds",
    "FX_LONG_POLL_SLICE_SECONDS": "long_poll_slice_seconds",
    "FX_SERVER_WORKERS": "server_workers",
    "FX_INSTANCE_TAKEOVER_SECONDS": "instance_takeover_seconds",
    "FX_FIRST_MESSAGE_SECONDS": "first_message_seconds",
    "FX_MAX_STREAMS_PER_PEER": "max_streams_per_peer",
    "FX_MAX_POLLS_PER_PEER": "max_polls_per_peer",
    "FX_MAX_TENSOR_NAMES": "max_tensor_names_per_request",
    "FX_INLINE_MODEL_BYTES": "inline_model_bytes",
    "FX_RETRY_INITIAL_SECONDS": "retry.initial_backoff_seconds",
    "FX_RETRY_MAX_SECONDS": "retry.max_backoff_seconds",
    "FX_RETRY_MULTIPLIER": "retry.multiplier",
    "FX_RETRY_TOTAL_SECONDS": "retry.total_seconds",
    "FX_TLS_TARGET_NAME_OVERRIDE": "target_name_override",
    "FX_CLIENT_ROLE": "client_role",
    "FX_METRICS_PORT": "metrics_port",
    "FX_METRICS_HOST": "metrics_host",
}

# Certificate roles an aggregator may accept from its clients (``client_role``).
CLIENT_ROLES: tuple[str, ...] = ("collaborator", "envoy")

_ADDRESS_KEYS = ("agg_addr", "agg_port", "host", "port", "address")
_SIZE_FIELDS = {"chunk_size", "max_message_bytes", "max_tensor_bytes", "max_model_bytes"}


def parse_size(value: object, what: str) -> int:
    """``4194304``, ``"4MiB"``, ``"64MB"`` -> bytes; ConfigError naming ``what`` otherwise."""
    if isinstance(value, bool):
        raise ConfigError(f"{what}: expected a size, got {value!r}")
    if isinstance(value, int):
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ConfigError(f"{what}: expected a size such as 4194304 or '4MiB', got {value!r}")
    unit = (match.group(2) or "").lower().rstrip("b")
    return int(match.group(1)) * _UNITS[unit]


def parse_bool(value: object, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{what}: expected true or false, got {value!r}")


def _convert(cls: type, name: str, value: object, what: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kind = fields[name].type
    if name in _SIZE_FIELDS:
        return parse_size(value, what)
    if kind in ("bool", bool):
        return parse_bool(value, what)
    try:
        if kind in ("int", int):
            if isinstance(value, bool):
                raise ValueError
            return int(str(value))
        if kind in ("float", float):
            if isinstance(value, bool):
                raise ValueError
            return float(str(value))
    except ValueError:
        raise ConfigError(f"{what}: expected a number, got {value!r}") from None
    return str(value)


def _convert_all(cls: type, data: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    known = {f.name for f in dataclasses.fields(cls)} - {"keepalive", "retry"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"{prefix}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    return {key: _convert(cls, key, value, f"{prefix}.{key}") for key, value in data.items()}


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    return cls(**_convert_all(cls, data, prefix))
