"""Where the communicator meets the real transport: the only module that constructs the gRPC
server and client (``transport.vertical_server`` / ``vertical_client``) and resolves the TLS
files, so a change in their signatures is fixed here alone. Tests use
``vertical.memory_link`` instead, through the same :class:`Transport` Protocol.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from openfl_like.core.errors import ConfigError
from openfl_like.core.logging import get_logger
from openfl_like.core.vertical import PartyRole
from openfl_like.transport.vertical_handlers import VerticalHandler
from openfl_like.vertical.link import PeerLink

if TYPE_CHECKING:
    from openfl_like.transport.credentials import TlsFiles

_log = get_logger(__name__)

CERT_ENV, KEY_ENV, CA_ENV = "FX_VERTICAL_CERT", "FX_VERTICAL_KEY", "FX_VERTICAL_CA"


@dataclass(frozen=True)
class Wire:
    """A started transport: the outbound link, the bound port and how to stop the server."""

    link: PeerLink
    port: int
    stop: Callable[[float], None]


class Transport(Protocol):
    def start(self, handler: VerticalHandler) -> Wire:
        """Start serving ``handler`` (the inbox) and open the link to the peer."""


def split_addr(addr: str, what: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{what} {addr!r} is not host:port")
    return host.strip("[]"), int(port)


def default_settings() -> Any:
    """``VerticalTransportSettings`` with the operator's FX_VERTICAL_* overrides."""
    from openfl_like.transport.vertical_settings import VerticalTransportSettings

    return VerticalTransportSettings().with_env()


@dataclass(frozen=True)
class GrpcTransport:
    """Mutual-TLS gRPC server on ``local_addr`` plus a client channel to ``peer_addr``."""

    peer_addr: str
    local_addr: str
    me: str
    peer: str
    session_id: str
    my_role: PartyRole
    tls_files: TlsFiles | None
    settings: Any
    client_threads: int
    server_threads: int

    def start(self, handler: VerticalHandler) -> Wire:
        from openfl_like.transport.vertical_client import VerticalPeerClient
        from openfl_like.transport.vertical_server import VerticalPeerServer

        host, port = split_addr(self.local_addr, "local_addr")
        split_addr(self.peer_addr, "peer_addr")
        common: dict[str, Any] = dict(me=self.me, peer=self.peer, session_id=self.session_id,
                                      my_role=self.my_role, tls_files=self.tls_files,
                                      settings=self.settings)
        running = VerticalPeerServer(handler, server_threads=self.server_threads,
                                     **common).start(host, port)
        try:
            client = VerticalPeerClient(self.peer_addr, client_threads=self.client_threads,
                                        **common)
        except BaseException:
            running.stop(0)
            raise
        return Wire(link=client, port=int(running.port), stop=running.stop)


def resolve_tls_files(
    *,
    name: str,
    tls_files: TlsFiles | None,
    pki_dir: Path | str | None,
    settings: Any = None,
    env: Mapping[str, str] = os.environ,
) -> TlsFiles:
    """The party's PEM files: ``tls_files``, else the PKI store's files for ``name``; each
    overridden by FX_VERTICAL_CERT/KEY/CA (or the settings' path overrides) when set."""
    from openfl_like.pki import PkiStore
    from openfl_like.transport.credentials import TlsFiles

    overrides: dict[str, Path] = {}
    for field, env_name, attrs in (
        ("cert_path", CERT_ENV, ("cert_path", "cert_file", "cert")),
        ("key_path", KEY_ENV, ("key_path", "key_file", "key")),
        ("ca_bundle_path", CA_ENV, ("ca_path", "ca_file", "ca", "ca_bundle_path")),
    ):
        value = env.get(env_name) or next(
            (getattr(settings, a) for a in attrs if getattr(settings, a, None)), None)
        if value:
            overrides[field] = Path(value)
    if tls_files is None and pki_dir is not None:
        tls_files = TlsFiles.for_participant(PkiStore(Path(pki_dir)), name)
    if tls_files is None:
        missing = [e for f, e in (("cert_path", CERT_ENV), ("key_path", KEY_ENV),
                                  ("ca_bundle_path", CA_ENV)) if f not in overrides]
        if missing:
            raise ConfigError(
                "mutual TLS needs tls_files or pki_dir (or all of FX_VERTICAL_CERT, "
                f"FX_VERTICAL_KEY, FX_VERTICAL_CA; missing {', '.join(missing)})"
            )
        return TlsFiles(cert_path=overrides["cert_path"], key_path=overrides["key_path"],
                        ca_bundle_path=overrides["ca_bundle_path"])
    if overrides:
        _log.info("TLS files overridden by environment: %s",
                  ", ".join(f"{k}={v}" for k, v in overrides.items()))
        tls_files = dataclasses.replace(tls_files, **overrides)
    return tls_files
