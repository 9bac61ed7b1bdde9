"""TLS files -> gRPC credentials. Mutual TLS: servers require and verify client certificates.

Both sides trust the PKI store's CA bundle (signing CA + root). The server name a client checks
is the host it dials, matched against the server certificate's SANs (DNS or IP); an override
(``ssl_target_name_override``) is used only when explicitly configured.

The server presents its full chain, leaf then signing CA (the root stays with the clients as the
trust anchor), so a client that trusts only the root can still build the path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from openfl_like.core.errors import ConfigError
from openfl_like.pki import PkiStore


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of one participant: its certificate and key, and the CA bundle it trusts."""

    cert_path: Path
    key_path: Path
    ca_bundle_path: Path
    crl_path: Path | None = None
    signing_cert_path: Path | None = None

    @classmethod
    def for_participant(cls, store: PkiStore, name: str) -> TlsFiles:
        return cls(
            cert_path=store.cert_path(name),
            key_path=store.key_path(name),
            ca_bundle_path=store.ca_bundle_path,
            crl_path=store.crl_path,
            signing_cert_path=store.signing_cert_path,
        )

    def read(self) -> tuple[bytes, bytes, bytes]:
        """(certificate chain, private key, CA bundle) as PEM bytes; ConfigError if missing."""
        out = []
        for label, path in (("certificate", self.cert_path), ("private key", self.key_path),
                            ("CA bundle", self.ca_bundle_path)):  # fmt: skip
            try:
                out.append(path.read_bytes())
            except OSError as exc:
                raise ConfigError(f"cannot read {label} {path}: {exc.strerror}") from None
        return out[0], out[1], out[2]


def server_chain(files: TlsFiles) -> bytes:
    """The server's certificate followed by the signing CA's (when known and not there yet)."""
    cert, _, _ = files.read()
    if files.signing_cert_path is None:
        return cert
    try:
        signing = files.signing_cert_path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read signing CA certificate {files.signing_cert_path}: {exc.strerror}"
        ) from None
    if signing.strip() in cert:
        return cert
    return cert.rstrip(b"\n") + b"\n" + signing


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    _, key, bundle = files.read()
    return grpc.ssl_server_credentials(
        [(key, server_chain(files))], root_certificates=bundle, require_client_auth=True
    )


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    cert, key, bundle = files.read()
    return grpc.ssl_channel_credentials(
        root_certificates=bundle, private_key=key, certificate_chain=cert
    )
