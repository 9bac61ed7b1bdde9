"""Who a certificate belongs to: participant name (CN) and role (OU) read from its subject."""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from openfl_like.core.errors import ConfigError, VerificationError
from openfl_like.core.ids import Role, check_name


def _single_attribute(name: x509.Name, oid: x509.ObjectIdentifier, label: str) -> str:
    values = name.get_attributes_for_oid(oid)
    if len(values) != 1:
        raise VerificationError(
            "parse" if oid == NameOID.COMMON_NAME else "role",
            f"certificate subject must hold exactly one {label}, found {len(values)}",
        )
    value = values[0].value
    return value if isinstance(value, str) else value.decode()


def name_from_subject(subject: x509.Name) -> str:
    common_name = _single_attribute(subject, NameOID.COMMON_NAME, "CN")
    try:
        return check_name(common_name, "participant name")
    except ConfigError as exc:
        raise VerificationError("parse", exc.message) from None


def role_from_subject(subject: x509.Name) -> Role:
    unit = _single_attribute(subject, NameOID.ORGANIZATIONAL_UNIT_NAME, "OU (role)")
    try:
        return Role.parse(unit)
    except ConfigError as exc:
        raise VerificationError("role", exc.message) from None


def participant_name(cert: x509.Certificate) -> str:
    """The participant name (subject CN); raises VerificationError('parse') when unusable."""
    return name_from_subject(cert.subject)


def participant_role(cert: x509.Certificate) -> Role:
    """The participant role (subject OU); raises VerificationError('role') when unknown."""
    return role_from_subject(cert.subject)


def certificate_fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 over the DER certificate, as colon-separated upper-case hex (like openssl)."""
    return _colon_hex(hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest())


def public_key_fingerprint(key: x509.CertificatePublicKeyTypes) -> str:
    """SHA-256 over the SubjectPublicKeyInfo: compare it out of band between CSR and host."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _colon_hex(hashlib.sha256(der).digest())


def _colon_hex(digest: bytes) -> str:
    return ":".join(f"{byte:02X}" for byte in digest)
