"""The certificate revocation list: built by the CA, checked by servers on every call.

``RevocationChecker`` is cheap per call: one ``stat`` of the CRL file; it re-reads and re-verifies
the CRL only when the file's mtime or size changed, so a ``fx pki revoke`` takes effect at the
next request without restarting a server. It fails closed: a missing, corrupt or forged CRL raises
``PkiError`` instead of letting everyone in.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from openfl_like.core.errors import PkiError
from openfl_like.pki import keys, profiles
from openfl_like.pki.pem import load_certificate, read_file


@dataclass(frozen=True)
class RevokedEntry:
    serial: int
    revoked_at: datetime
    reason: x509.ReasonFlags | None = None


def build_crl(
    issuer_cert: x509.Certificate, issuer_key: keys.PrivateKey,
    entries: Iterable[RevokedEntry], *, number: int, now: datetime | None = None,
) -> x509.CertificateRevocationList:
    """A CRL signed by the signing CA, with CRLNumber and AuthorityKeyIdentifier (RFC 5280)."""
    moment = now or datetime.now(timezone.utc)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer_cert.subject)
        .last_update(moment)
        .next_update(moment + profiles.CRL_VALIDITY)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    for entry in entries:
        revoked = (
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial)
            .revocation_date(entry.revoked_at)
        )
        if entry.reason is not None:
            revoked = revoked.add_extension(x509.CRLReason(entry.reason), critical=False)
        builder = builder.add_revoked_certificate(revoked.build())
    return builder.sign(issuer_key, keys.SIGNATURE_HASH())


def crl_pem(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.PEM)


def load_crl(crl_path: Path, issuer_cert: x509.Certificate) -> x509.CertificateRevocationList:
    """Read the CRL and prove it was signed by ``issuer_cert``."""
    data = read_file(crl_path, "CRL")
    try:
        crl = x509.load_pem_x509_crl(data)
    except ValueError:
        raise PkiError(f"corrupt CRL: {crl_path}") from None
    if crl.issuer != issuer_cert.subject or not crl.is_signature_valid(issuer_cert.public_key()):
        raise PkiError(f"CRL {crl_path} is not signed by the signing CA")
    return crl


def crl_entries(crl: x509.CertificateRevocationList) -> list[RevokedEntry]:
    entries = []
    for revoked in crl:
        try:
            reason: x509.ReasonFlags | None = revoked.extensions.get_extension_for_class(
                x509.CRLReason
            ).value.reason
        except x509.ExtensionNotFound:
            reason = None
        entries.append(RevokedEntry(revoked.serial_number, revoked.revocation_date_utc, reason))
    return entries


def crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return 0


class RevocationChecker:
    """``is_revoked(cert)`` against the store's CRL; reloads when the CRL file changes."""

    def __init__(self, crl_path: Path, signing_cert_path: Path) -> None:
        self._crl_path = Path(crl_path)
        self._issuer = load_certificate(Path(signing_cert_path), "signing CA certificate")
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._serials: frozenset[int] = frozenset()
        self._reload_if_changed()

    def _reload_if_changed(self) -> frozenset[int]:
        try:
            info = os.stat(self._crl_path)
        except OSError as exc:
            raise PkiError(f"CRL unavailable: {self._crl_path}: {exc.strerror}") from None
        stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
        with self._lock:
            if stamp != self._stamp:
                crl = load_crl(self._crl_path, self._issuer)
                self._serials = frozenset(r.serial_number for r in crl)
                self._stamp = stamp
            return self._serials

    @property
    def revoked_serials(self) -> frozenset[int]:
        return self._reload_if_changed()

    def is_revoked(self, cert: x509.Certificate) -> bool:
        return cert.serial_number in self._reload_if_changed()
