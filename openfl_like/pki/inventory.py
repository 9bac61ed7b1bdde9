"""What a store holds: one row per participant certificate, with revocation and expiry state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from openfl_like.core.errors import PkiError, VerificationError
from openfl_like.core.ids import Role
from openfl_like.pki.identity import participant_role
from openfl_like.pki.pem import load_certificate
from openfl_like.pki.store import PkiStore
from openfl_like.pki.trust import load_trust


@dataclass(frozen=True)
class CertificateInfo:
    name: str
    path: Path
    role: Role | None
    serial: int | None
    not_after: datetime | None
    revoked: bool
    status: str  # valid | revoked | expired | foreign (not from this CA) | corrupt | no role

    @property
    def serial_hex(self) -> str:
        return "" if self.serial is None else f"{self.serial:X}"


def list_certificates(store: PkiStore, *, now: datetime | None = None) -> list[CertificateInfo]:
    """Every certificate under ``store.certs_dir``; a corrupt file is a row, not a failure.

    In a participant store the trust comes from its CA bundle, and ``revoked`` from its CRL
    copy when there is one (``load_trust``)."""
    trust = load_trust(store)
    signing = trust.signing
    revoked_serials = trust.revoked_serials()
    moment = now or datetime.now(timezone.utc)
    rows = []
    for name in store.cert_names():
        path = store.certs_dir / f"{name}.crt"
        try:
            cert = load_certificate(path)
        except PkiError:
            rows.append(CertificateInfo(name, path, None, None, None, False, "corrupt"))
            continue
        try:
            role: Role | None = participant_role(cert)
        except VerificationError:
            role = None
        revoked = cert.serial_number in revoked_serials
        if cert.issuer != signing.subject:
            status = "foreign"
        elif revoked:
            status = "revoked"
        elif moment > cert.not_valid_after_utc:
            status = "expired"
        elif role is None:
            status = "no role"
        else:
            status = "valid"
        rows.append(CertificateInfo(
            name, path, role, cert.serial_number, cert.not_valid_after_utc, revoked, status
        ))
    return rows
