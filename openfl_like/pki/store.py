"""PkiStore: the on-disk layout of a certificate store. Paths only, no cryptography.

Layout (every path is below ``root``)::

    ca/root.crt  ca/root.key          root CA (the key belongs offline in real use)
    ca/signing.crt  ca/signing.key    signing CA: issues every participant certificate
    ca/ca-bundle.pem                  signing CA + root CA: what servers and clients trust
    ca/crl.pem                        certificate revocation list, signed by the signing CA
    certs/<name>.crt                  participant certificates
    private/<name>.key                participant private keys (mode 0600)
    requests/<name>.csr               CSRs made on this host by ``fx pki csr``

Two kinds of store are normal (``PkiStore.kind``): the CA host's (``ca``: CA keys and
certificates) and a participant's (``participant``: the CA bundle, its own key and certificate,
maybe the CRL and the signing CA certificate, never a CA key), made by ``fx pki csr`` and
``fx pki import``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from openfl_like.core.ids import check_name

PKI_DIR_ENV = "FX_PKI_DIR"
DEFAULT_PKI_DIR = Path("pki")


STORE_KINDS = {
    "ca": "CA store {root} (the CA's keys are here)",
    "participant": "participant store {root} (a CA bundle, no CA keys)",
    "empty": "empty store {root} (no CA and no CA bundle)",
}


@dataclass(frozen=True)
class PkiStore:
    """Where each piece of a workspace PKI lives; creating one touches nothing on disk."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @classmethod
    def from_env(cls, default: Path | None = None) -> PkiStore:
        """The store named by ``$FX_PKI_DIR``, else ``default``, else ``./pki``."""
        chosen = os.environ.get(PKI_DIR_ENV) or default or DEFAULT_PKI_DIR
        return cls(Path(chosen))

    @property
    def ca_dir(self) -> Path:
        return self.root / "ca"

    @property
    def certs_dir(self) -> Path:
        return self.root / "certs"

    @property
    def private_dir(self) -> Path:
        return self.root / "private"

    @property
    def requests_dir(self) -> Path:
        return self.root / "requests"

    @property
    def root_cert_path(self) -> Path:
        return self.ca_dir / "root.crt"

    @property
    def root_key_path(self) -> Path:
        return self.ca_dir / "root.key"

    @property
    def signing_cert_path(self) -> Path:
        return self.ca_dir / "signing.crt"

    @property
    def signing_key_path(self) -> Path:
        return self.ca_dir / "signing.key"

    @property
    def ca_bundle_path(self) -> Path:
        return self.ca_dir / "ca-bundle.pem"

    @property
    def crl_path(self) -> Path:
        return self.ca_dir / "crl.pem"

    @property
    def ca_paths(self) -> tuple[Path, ...]:
        """Every file ``fx pki init`` writes."""
        return (
            self.root_key_path, self.root_cert_path, self.signing_key_path,
            self.signing_cert_path, self.ca_bundle_path, self.crl_path,
        )

    def kind(self) -> str:
        """``ca`` (CA keys here), ``participant`` (a CA bundle, no CA keys) or ``empty``."""
        if self.signing_key_path.is_file() or self.root_key_path.is_file():
            return "ca"
        if self.ca_bundle_path.is_file():
            return "participant"
        return "empty"

    def describe_kind(self) -> str:
        """The kind of store in words, for messages."""
        return STORE_KINDS[self.kind()].format(root=self.root)

    def has_ca(self) -> bool:
        return self.signing_cert_path.is_file() and self.root_cert_path.is_file()

    def cert_path(self, name: str) -> Path:
        return self.certs_dir / f"{check_name(name)}.crt"

    def key_path(self, name: str) -> Path:
        return self.private_dir / f"{check_name(name)}.key"

    def csr_path(self, name: str) -> Path:
        return self.requests_dir / f"{check_name(name)}.csr"

    def cert_names(self) -> list[str]:
        """Names of the participant certificates in the store, sorted."""
        if not self.certs_dir.is_dir():
            return []
        return sorted(p.stem for p in self.certs_dir.glob("*.crt") if p.is_file())
