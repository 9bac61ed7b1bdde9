"""A server certificate that does not name the host dialled: a configuration error, said at once.

gRPC reports it as UNAVAILABLE ("Hostname Verification Check failed", or in older releases
"Peer name X is not in peer certificate"), the code of a server that is down, so a client would
retry it for its whole retry window although no retry can help. :func:`is_hostname_mismatch`
spots it, and :func:`hostname_mismatch_error` makes the one-line ``ConfigError`` that names the
host dialled and the names the certificate carries: those are read by one extra TLS connection
without verification (``peer_certificate_names``), only to write the message.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Callable

import grpc
from cryptography import x509

from openfl_like.core.errors import ConfigError
from openfl_like.transport.credentials import TlsFiles

PROBE_TIMEOUT_SECONDS = 5.0
_MARKERS = ("hostname verification", "not in peer certificate")


def is_hostname_mismatch(error: BaseException) -> bool:
    """True for gRPC's refusal of a server certificate that does not name the host dialled."""
    if not isinstance(error, grpc.RpcError):
        return False
    code = getattr(error, "code", None)
    if not callable(code) or code() is not grpc.StatusCode.UNAVAILABLE:
        return False
    details = getattr(error, "details", None)
    text = ((details() if callable(details) else "") or "").lower()
    return any(marker in text for marker in _MARKERS)


def certificate_names(der: bytes) -> tuple[str, ...]:
    """The DNS names and IP addresses of a certificate's SAN, in order."""
    cert = x509.load_der_x509_certificate(der)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    names: list[str] = []
    for general in sans:
        if isinstance(general, x509.DNSName):
            names.append(general.value)
        elif isinstance(general, x509.IPAddress) and isinstance(
            general.value, (ipaddress.IPv4Address, ipaddress.IPv6Address)
        ):
            names.append(str(general.value))
    return tuple(names)


def peer_certificate_names(
    host: str, port: int, tls_files: TlsFiles | None, *, timeout: float = PROBE_TIMEOUT_SECONDS
) -> tuple[str, ...] | None:
    """The SAN names of the certificate the server at host:port presents, or None when it
    cannot be read. No verification: the names only go into an error message."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        if tls_files is not None:  # servers require a client certificate (TLS 1.2 needs it)
            context.load_cert_chain(tls_files.cert_path, tls_files.key_path)
        with socket.create_connection((host, port), timeout=timeout) as sock, \
                context.wrap_socket(sock, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    except (OSError, ValueError):
        return None
    return certificate_names(der) if der else None


def hostname_mismatch_error(
    error: grpc.RpcError, *, what: str, server: str, host: str, port: int, dialled: str,
    tls_files: TlsFiles | None,
    probe: Callable[[str, int, TlsFiles | None], tuple[str, ...] | None] = peer_certificate_names,
) -> ConfigError:
    """The ConfigError for a hostname mismatch: ``dialled`` (the host, or the configured
    override) and the certificate's names, with what to change."""
    names = probe(host, port, tls_files)
    carried = (", ".join(names) or "no DNS/IP names") if names is not None else "(unreadable)"
    return ConfigError(
        f"{what}: the {server}'s certificate does not name {dialled!r}, the host dialled at "
        f"{host}:{port} (it names: {carried}); dial one of those names, or have the CA "
        f"re-issue the {server}'s certificate with --san {dialled}"
    )
