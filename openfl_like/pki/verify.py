"""Verify a participant certificate against a store, naming the first check that fails.

Checks, in order: ``parse`` (a certificate with a usable CN), ``chain`` (signed by our signing
CA, which the root signed), ``validity`` (now within every certificate's window), ``role`` (OU is
a known role, and the expected one when given), ``key_usage`` (a non-CA leaf with
digitalSignature), ``extended_key_usage`` (serverAuth for server roles, clientAuth for client
roles) and ``revoked`` (not on the CRL). Each failure is a ``VerificationError(check, message)``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from openfl_like.core.errors import PkiError, VerificationError
from openfl_like.core.ids import Role
from openfl_like.pki import profiles
from openfl_like.pki.identity import participant_name, participant_role
from openfl_like.pki.pem import load_certificate, parse_certificate, read_file
from openfl_like.pki.revocation import load_crl
from openfl_like.pki.store import PkiStore

CHECKS = ("parse", "chain", "validity", "role", "key_usage", "extended_key_usage", "revoked")


def _as_certificate(cert_or_path: x509.Certificate | Path | str | bytes) -> x509.Certificate:
    if isinstance(cert_or_path, x509.Certificate):
        return cert_or_path
    try:
        if isinstance(cert_or_path, bytes):
            return parse_certificate(cert_or_path)
        path = Path(cert_or_path)
        return parse_certificate(read_file(path, "certificate"), f"certificate {path}")
    except PkiError as exc:
        raise VerificationError("parse", exc.message) from None


def _check_issued_by(child: x509.Certificate, parent: x509.Certificate, what: str) -> None:
    if child.issuer != parent.subject:
        raise VerificationError(
            "chain",
            f"{what} is issued by {child.issuer.rfc4514_string()!r}, "
            f"not by {parent.subject.rfc4514_string()!r}",
        )
    try:
        child.verify_directly_issued_by(parent)
    except (InvalidSignature, ValueError, TypeError):
        raise VerificationError(
            "chain", f"{what} signature does not verify with {parent.subject.rfc4514_string()!r}"
        ) from None


def _check_window(cert: x509.Certificate, what: str, now: datetime) -> None:
    if now < cert.not_valid_before_utc:
        raise VerificationError(
            "validity", f"{what} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        )
    if now > cert.not_valid_after_utc:
        raise VerificationError(
            "validity", f"{what} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        )


def _extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.Extension | None:
    try:
        return cert.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return None


def _check_key_usage(cert: x509.Certificate) -> None:
    constraints = _extension(cert, x509.BasicConstraints)
    if constraints is not None and constraints.value.ca:
        raise VerificationError("key_usage", "a CA certificate is not a participant certificate")
    usage = _extension(cert, x509.KeyUsage)
    if usage is None:
        raise VerificationError("key_usage", "certificate has no keyUsage extension")
    if not usage.value.digital_signature:
        raise VerificationError("key_usage", "keyUsage lacks digitalSignature")
    if usage.value.key_cert_sign or usage.value.crl_sign:
        raise VerificationError("key_usage", "a participant certificate must not sign certificates")


def _check_eku(cert: x509.Certificate, role: Role) -> None:
    needed = profiles.required_eku(role)
    label = "serverAuth" if role.is_server else "clientAuth"
    eku = _extension(cert, x509.ExtendedKeyUsage)
    if eku is None or needed not in eku.value:
        raise VerificationError(
            "extended_key_usage", f"a {role.value} certificate needs extendedKeyUsage {label}"
        )


def verify_certificate(
    cert_or_path: x509.Certificate | Path | str | bytes, store: PkiStore, *,
    role: Role | None = None, now: datetime | None = None,
) -> tuple[str, Role]:
    """Return (name, role) of a valid participant certificate; else raise VerificationError."""
    cert = _as_certificate(cert_or_path)
    moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    if not store.has_ca():
        raise PkiError(f"no CA in {store.root}: run `fx pki init` first")
    root = load_certificate(store.root_cert_path, "root CA certificate")
    signing = load_certificate(store.signing_cert_path, "signing CA certificate")
    name = participant_name(cert)
    _check_issued_by(cert, signing, "certificate")
    _check_issued_by(signing, root, "signing CA")
    if root.issuer != root.subject:
        raise VerificationError("chain", "root CA certificate is not self-signed")
    _check_issued_by(root, root, "root CA")
    _check_window(cert, "certificate", moment)
    _check_window(signing, "signing CA", moment)
    _check_window(root, "root CA", moment)
    actual = participant_role(cert)
    if role is not None and actual != role:
        raise VerificationError(
            "role", f"certificate is for role {actual.value!r}, expected {role.value!r}"
        )
    _check_key_usage(cert)
    _check_eku(cert, actual)
    crl = load_crl(store.crl_path, signing)
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    if entry is not None:
        raise VerificationError(
            "revoked", f"certificate {name!r} was revoked on {entry.revocation_date_utc:%Y-%m-%d}"
        )
    return name, actual
