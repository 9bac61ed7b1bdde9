"""Where the communicator meets the real transport: the only module that constructs the gRPC
server and client (``transport.vertical_server`` / ``vertical_client``) and resolves the TLS
files, so a change in their signatures is fixed here alone. Tests use
``vertical.memory_link`` instead, through the same :class:`Transport` Protocol.
"""

from __future__ import annotations

from collections.abc import Callable
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


@dataclass(frozen=True)
class Wire:
    """A started transport: the outbound link, the bound port and how to stop the server."""

    link: PeerLink
    port: int
    stop: Callable[[float], None]


class Transport(Protocol):
    def start(self, handler: VerticalHandler) -> Wire:
        """Start serving ``handler`` (the inbox) and open the link to the peer."""


def split_addr(addr: str, what: str, *, any_port: bool = True) -> tuple[str, int]:
    """(host, port) of ``host:port`` / ``[v6]:port``; port 0 (any free port) only when
    ``any_port`` (a local address, not a peer's)."""
    host, sep, port = str(addr).rpartition(":")
    if not sep or not host or not port.isdigit() \
            or not (0 if any_port else 1) <= int(port) <= 65535:
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
    settings: Any,
) -> TlsFiles:
    """The party's PEM files: ``tls_files``, else the PKI store's files for ``name``, each
    overridden by FX_VERTICAL_CERT/KEY/CA (the settings' ``cert_path``/``key_path``/
    ``ca_path``); with neither, all three variables must be set (ConfigError otherwise)."""
    from openfl_like.pki import PkiStore
    from openfl_like.transport.credentials import TlsFiles

    if tls_files is None and pki_dir is not None:
        tls_files = TlsFiles.for_participant(PkiStore(Path(pki_dir)), name)
    resolved: TlsFiles = settings.tls_files(tls_files)
    if resolved != tls_files:
        _log.info("TLS files of %s: certificate %s, key %s, CA bundle %s", name,
                  resolved.cert_path, resolved.key_path, resolved.ca_bundle_path)
    _check_revocation_files(name, resolved)
    return resolved


def _check_revocation_files(name: str, files: TlsFiles) -> None:
    """A party serves its peer, so, like an aggregator, it checks the caller's certificate
    against the CA's revocation list: a store that lacks the CRL or the signing CA certificate
    (a participant store made by ``fx pki import`` without ``--crl``) is a clear error here,
    not a bare "file not found" from deep inside the server."""
    if not files.cert_path.is_file():
        return  # the missing certificate comes first: the transport names it when it reads it
    missing = [str(path) for path in (files.crl_path, files.signing_cert_path)
               if path is not None and not path.is_file()]
    if missing:
        raise ConfigError(
            f"party {name}: {' and '.join(missing)} missing: a party serves its peer and checks "
            "its certificate against the CA's revocation list; copy crl.pem and signing.crt "
            "from the CA host and import them with your certificate (fx pki import --cert "
            f"{name}.crt --ca-bundle ca-bundle.pem --crl crl.pem --signing-cert signing.crt)")
    if files.crl_path is None:
        _log.warning("party %s: no CRL given (FX_VERTICAL_CERT/KEY/CA without a PKI store): "
                     "the peer's certificate is not checked for revocation", name)


def tls_files_for(name: str, *, tls: bool, tls_files: TlsFiles | None,
                  pki_dir: Path | str | None, settings: Any) -> TlsFiles | None:
    """The files for mutual TLS, or None (TLS off) only when asked for, with a loud warning."""
    if tls:
        return resolve_tls_files(name=name, tls_files=tls_files, pki_dir=pki_dir,
                                 settings=settings)
    _log.warning("INSECURE: vertical communicator %s runs WITHOUT TLS: the peer is not "
                 "authenticated and tensors travel in clear text (tls=False)", name)
    return None
