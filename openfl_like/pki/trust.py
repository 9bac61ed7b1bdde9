"""What a store trusts: the root and signing CA certificates, and the CRL when there is one.

A CA store reads them from ``ca/root.crt``, ``ca/signing.crt`` and ``ca/crl.pem`` (the CRL is
required there: the CA keeps it). A participant store (``fx pki import``) has only the CA bundle
(signing CA + root CA) and maybe a copy of the CRL: its certificates are verified against the
bundle, and revocation is checked only when a CRL was imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from openfl_like.core.errors import PkiError
from openfl_like.pki.pem import load_certificate, read_file
from openfl_like.pki.revocation import load_crl
from openfl_like.pki.store import PkiStore


@dataclass(frozen=True)
class Trust:
    """Trust anchors of one store; ``crl`` is None when revocation cannot be checked here."""

    root: x509.Certificate
    signing: x509.Certificate
    crl: x509.CertificateRevocationList | None
    kind: str  # the store's kind (PkiStore.kind)
    source: Path  # the file(s) the anchors came from, for messages

    def revoked_serials(self) -> frozenset[int]:
        return frozenset() if self.crl is None else frozenset(e.serial_number for e in self.crl)


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def split_bundle(data: bytes, where: Path | str) -> tuple[x509.Certificate, x509.Certificate]:
    """(root, signing CA) of a CA bundle as ``fx pki init`` writes it: the signing CA and the
    self-signed root that issued it, in any order."""
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise PkiError(f"CA bundle {where} is not a PEM certificate bundle") from None
    roots = [c for c in certs if _is_ca(c) and _issued_by(c, c)]
    if len(roots) != 1:
        raise PkiError(f"CA bundle {where} must hold exactly one root CA (a self-signed CA "
                       f"certificate), found {len(roots)} among {len(certs)} certificate(s)")
    root = roots[0]
    signing = [c for c in certs if c is not root and _is_ca(c) and _issued_by(c, root)]
    if len(signing) != 1 or len(certs) != 2:
        raise PkiError(f"CA bundle {where} must hold the signing CA and the root CA that issued "
                       f"it (found {len(certs)} certificate(s), {len(signing)} signing CA)")
    return root, signing[0]


def load_trust(store: PkiStore) -> Trust:
    """The trust anchors of ``store``; PkiError naming the kind of store when it has none."""
    kind = store.kind()
    if store.has_ca():
        root = load_certificate(store.root_cert_path, "root CA certificate")
        signing = load_certificate(store.signing_cert_path, "signing CA certificate")
        required = kind == "ca" or store.crl_path.is_file()  # the CA always keeps its CRL
        crl = load_crl(store.crl_path, signing) if required else None
        return Trust(root, signing, crl, kind, store.ca_dir)
    if store.ca_bundle_path.is_file():
        path = store.ca_bundle_path
        root, signing = split_bundle(read_file(path, "CA bundle"), path)
        crl = load_crl(store.crl_path, signing) if store.crl_path.is_file() else None
        return Trust(root, signing, crl, kind, path)
    raise PkiError(
        f"{store.describe_kind()}: on the CA host run `fx pki init`; on a participant host "
        "run `fx pki csr`, then `fx pki import --cert FILE --ca-bundle FILE` with what the CA "
        "sent back"
    )
