"""Settings of the vertical communicator's transport, with ``FX_VERTICAL_*`` overrides for
operators (the equivalents of EFL's ``EFL_*`` variables).

``VerticalTransportSettings().with_env()`` applies the variables below; an empty variable counts
as unset. Sizes accept integers or ``"4MiB"``/``"64MB"`` (``transport.settings.parse_size``).
A bad value is a ``ConfigError`` naming the variable.

====================================  ==========================  ==============================
environment variable                  setting                     default
====================================  ==========================  ==============================
``FX_VERTICAL_CERT``                  ``cert_path``               the PKI store's certificate
``FX_VERTICAL_KEY``                   ``key_path``                the PKI store's key
``FX_VERTICAL_CA``                    ``ca_path``                 the PKI store's CA bundle
``FX_VERTICAL_TARGET_NAME``           ``target_name_override``    "" (check the dialled host)
``FX_VERTICAL_CHUNK_BYTES``           ``chunk_bytes``             4 MiB
``FX_VERTICAL_CLIENT_MAX_SEND_BYTES`` ``client_max_send_bytes``   chunk_bytes + 1 MiB
``FX_VERTICAL_CLIENT_MAX_RECV_BYTES`` ``client_max_recv_bytes``   chunk_bytes + 1 MiB
``FX_VERTICAL_SERVER_MAX_SEND_BYTES`` ``server_max_send_bytes``   chunk_bytes + 1 MiB
``FX_VERTICAL_SERVER_MAX_RECV_BYTES`` ``server_max_recv_bytes``   chunk_bytes + 1 MiB
``FX_VERTICAL_MAX_INBOX_BYTES``       ``max_inbox_bytes``         1 GiB (the communicator's)
``FX_VERTICAL_MAX_TENSOR_BYTES``      ``max_tensor_bytes``        max_inbox_bytes
``FX_VERTICAL_MAX_STREAMS``           ``max_streams``             2 (concurrent streamed tensors)
``FX_VERTICAL_FIRST_PIECE_SECONDS``   ``first_piece_seconds``     5
``FX_VERTICAL_RETRY_INITIAL_SECONDS`` ``retry_initial_seconds``   0.05
``FX_VERTICAL_RETRY_MAX_SECONDS``     ``retry_max_seconds``       1
====================================  ==========================  ==============================

A tensor of at most ``chunk_bytes`` travels as one ``PutTensor`` message (the per-step fast
path); a larger one is streamed in ``chunk_bytes`` pieces. Message limits must leave room for
a chunk plus its header (``HEADROOM``). The server refuses a tensor over ``max_tensor_bytes`` from
its metadata, before it buffers a byte; ``max_inbox_bytes`` is enforced by the communicator.

A certificate, key or CA override replaces that one file of the PKI store's set
(:meth:`VerticalTransportSettings.tls_files`); without a PKI store all three are needed. With
another CA bundle the store's CRL no longer applies (it is signed by the store's CA) and is
not checked.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openfl_like.core.errors import ConfigError
from openfl_like.transport.credentials import TlsFiles
from openfl_like.transport.settings import parse_size

MIB = 1024 * 1024
HEADROOM = 64 * 1024  # a tensor message's header, metadata and protobuf framing

_MESSAGE_LIMITS = ("client_max_send_bytes", "client_max_recv_bytes", "server_max_send_bytes",
                   "server_max_recv_bytes")


@dataclass(frozen=True)
class VerticalTransportSettings:
    chunk_bytes: int = 4 * MIB
    # 0: chunk_bytes + 1 MiB
    client_max_send_bytes: int = 0
    client_max_recv_bytes: int = 0
    server_max_send_bytes: int = 0
    server_max_recv_bytes: int = 0
    max_inbox_bytes: int = 1024 * MIB
    max_tensor_bytes: int = 0  # 0: max_inbox_bytes
    # concurrent StreamTensor calls the server takes (more: RESOURCE_EXHAUSTED, retried); at
    # most server_threads - 1 of them, so unary calls always find a worker
    max_streams: int = 2
    # a stream whose first piece does not come this soon ends (DEADLINE_EXCEEDED) and frees its
    # worker; later pieces must each come within piece_seconds
    first_piece_seconds: float = 5.0
    piece_seconds: float = 60.0
    target_name_override: str = ""
    cert_path: Path | None = None
    key_path: Path | None = None
    ca_path: Path | None = None
    retry_initial_seconds: float = 0.05
    retry_max_seconds: float = 1.0
    keepalive_seconds: float = 30.0
    keepalive_timeout_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.chunk_bytes <= 0:
            raise ConfigError(f"vertical chunk_bytes: must be > 0, got {self.chunk_bytes}")
        for name in _MESSAGE_LIMITS:
            value = getattr(self, name)
            if value == 0:
                object.__setattr__(self, name, self.chunk_bytes + MIB)
            elif value < self.chunk_bytes + HEADROOM:
                raise ConfigError(
                    f"vertical {name} ({value}) must be at least chunk_bytes "
                    f"({self.chunk_bytes}) + {HEADROOM} for a chunk and its header"
                )
        if self.max_inbox_bytes <= 0:
            raise ConfigError(f"vertical max_inbox_bytes: must be > 0, got {self.max_inbox_bytes}")
        if self.max_tensor_bytes == 0:
            object.__setattr__(self, "max_tensor_bytes", self.max_inbox_bytes)
        elif self.max_tensor_bytes < 0:
            raise ConfigError(f"vertical max_tensor_bytes: must be >= 0, got "
                              f"{self.max_tensor_bytes}")
        if self.max_streams < 1:
            raise ConfigError(f"vertical max_streams: must be >= 1, got {self.max_streams}")
        for name in ("first_piece_seconds", "piece_seconds", "retry_initial_seconds",
                     "retry_max_seconds", "keepalive_seconds", "keepalive_timeout_seconds"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"vertical {name}: must be > 0, got {getattr(self, name)}")
        if self.retry_max_seconds < self.retry_initial_seconds:
            raise ConfigError("vertical retry_max_seconds must be >= retry_initial_seconds")

    def with_env(self, env: Mapping[str, str] = os.environ) -> VerticalTransportSettings:
        """These settings with the ``FX_VERTICAL_*`` overrides of ``env`` applied."""
        changes: dict[str, Any] = {}
        for var, name in ENV_VARS.items():
            raw = env.get(var, "")
            if raw.strip():
                changes[name] = _convert(name, raw.strip(), var)
        if not changes:
            return self
        if "chunk_bytes" in changes:  # limits derived from the old chunk size follow the new
            derived = self.chunk_bytes + MIB
            for name in _MESSAGE_LIMITS:
                if name not in changes and getattr(self, name) == derived:
                    changes[name] = 0
        if "max_inbox_bytes" in changes and "max_tensor_bytes" not in changes \
                and self.max_tensor_bytes == self.max_inbox_bytes:
            changes["max_tensor_bytes"] = 0
        try:
            return dataclasses.replace(self, **changes)
        except ConfigError as exc:
            given = ", ".join(f"{var}={env[var]}" for var, name in ENV_VARS.items()
                              if name in changes and env.get(var, "").strip())
            raise ConfigError(f"{exc.message} (from the environment: {given})") from None

    def tls_files(self, base: TlsFiles | None) -> TlsFiles:
        """``base`` (the PKI store's files, or None) with the cert/key/CA overrides applied."""
        overrides = {"cert_path": self.cert_path, "key_path": self.key_path,
                     "ca_bundle_path": self.ca_path}
        for field, path in overrides.items():
            if path is not None and not Path(path).is_file():
                var = _VAR_OF[_SETTING_OF.get(field, field)]
                raise ConfigError(f"{var}: no such file {path}")
        if base is None:
            if self.cert_path is None or self.key_path is None or self.ca_path is None:
                raise ConfigError(
                    "without a PKI directory the vertical party needs FX_VERTICAL_CERT, "
                    "FX_VERTICAL_KEY and FX_VERTICAL_CA (certificate, key and CA bundle)"
                )
            return TlsFiles(Path(self.cert_path), Path(self.key_path), Path(self.ca_path))
        files = dataclasses.replace(base, **{k: Path(v) for k, v in overrides.items()
                                             if v is not None})
        if self.ca_path is not None:  # the store's CRL is signed by the store's CA
            files = dataclasses.replace(files, crl_path=None, signing_cert_path=None)
        return files


ENV_VARS: dict[str, str] = {
    "FX_VERTICAL_CERT": "cert_path",
    "FX_VERTICAL_KEY": "key_path",
    "FX_VERTICAL_CA": "ca_path",
    "FX_VERTICAL_TARGET_NAME": "target_name_override",
    "FX_VERTICAL_CHUNK_BYTES": "chunk_bytes",
    "FX_VERTICAL_CLIENT_MAX_SEND_BYTES": "client_max_send_bytes",
    "FX_VERTICAL_CLIENT_MAX_RECV_BYTES": "client_max_recv_bytes",
    "FX_VERTICAL_SERVER_MAX_SEND_BYTES": "server_max_send_bytes",
    "FX_VERTICAL_SERVER_MAX_RECV_BYTES": "server_max_recv_bytes",
    "FX_VERTICAL_MAX_INBOX_BYTES": "max_inbox_bytes",
    "FX_VERTICAL_MAX_TENSOR_BYTES": "max_tensor_bytes",
    "FX_VERTICAL_MAX_STREAMS": "max_streams",
    "FX_VERTICAL_FIRST_PIECE_SECONDS": "first_piece_seconds",
    "FX_VERTICAL_RETRY_INITIAL_SECONDS": "retry_initial_seconds",
    "FX_VERTICAL_RETRY_MAX_SECONDS": "retry_max_seconds",
}
_VAR_OF = {name: var for var, name in ENV_VARS.items()}
_SETTING_OF = {"ca_bundle_path": "ca_path"}
_SIZES = {"chunk_bytes", "max_inbox_bytes", "max_tensor_bytes", *_MESSAGE_LIMITS}
_PATHS = {"cert_path", "key_path", "ca_path"}
_FLOATS = {"first_piece_seconds", "retry_initial_seconds", "retry_max_seconds"}


def _convert(name: str, raw: str, var: str) -> Any:
    if name in _SIZES:
        return parse_size(raw, var)
    if name in _PATHS:
        return Path(raw).expanduser()
    try:
        if name in _FLOATS:
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError(raw)
            return value
        if name == "max_streams":
            return int(raw)
    except ValueError:
        raise ConfigError(f"{var}: expected a number, got {raw!r}") from None
    return raw


__all__ = ["ENV_VARS", "HEADROOM", "VerticalTransportSettings"]
