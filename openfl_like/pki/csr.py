"""Certificate signing requests: made on the participant's host, checked on the CA host.

The private key is generated next to the CSR and never leaves that host; only the CSR travels.
``inspect_csr`` is what the CA runs first: it proves the request was signed by the key it names,
and that the subject is exactly ``O=openfl_like, OU=<role>, CN=<name>`` with a safe name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from openfl_like.core.errors import PkiError, VerificationError
from openfl_like.core.fsutil import SECRET_MODE, atomic_write
from openfl_like.core.ids import Role, check_name
from openfl_like.pki import keys, profiles
from openfl_like.pki.identity import name_from_subject, public_key_fingerprint, role_from_subject

_ALLOWED_SUBJECT_OIDS = {
    NameOID.COMMON_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.ORGANIZATION_NAME,
}


@dataclass(frozen=True)
class CsrRequest:
    """A CSR whose signature and subject were checked; what the CA shows before signing."""

    csr: x509.CertificateSigningRequest
    name: str
    role: Role
    requested_sans: tuple[x509.GeneralName, ...]
    public_key_fingerprint: str

    @property
    def subject_text(self) -> str:
        return self.csr.subject.rfc4514_string()


@dataclass(frozen=True)
class CsrFiles:
    name: str
    role: Role
    key_path: Path
    csr_path: Path
    public_key_fingerprint: str


def build_csr(
    name: str, role: Role, key: keys.PrivateKey, sans: Sequence[str] | None = None
) -> x509.CertificateSigningRequest:
    """A CSR for (name, role); server roles ask for their host names (default: this host)."""
    check_name(name)
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        profiles.leaf_subject(name, role)
    )
    requested = profiles.server_sans(sans) if role.is_server else [
        profiles.parse_san(s) for s in sans or ()
    ]
    if requested:
        builder = builder.add_extension(x509.SubjectAlternativeName(requested), critical=False)
    return builder.sign(key, keys.SIGNATURE_HASH())


def write_csr(
    out_dir: Path, name: str, role: Role, sans: Sequence[str] | None = None, *,
    key_type: str = "ec", force: bool = False,
    key_path: Path | None = None, csr_path: Path | None = None,
) -> CsrFiles:
    """Make a key and a CSR: ``out_dir/<name>.key`` (0600) and ``out_dir/<name>.csr``."""
    check_name(name)
    keys.check_key_type(key_type)
    key_file = key_path or out_dir / f"{name}.key"
    csr_file = csr_path or out_dir / f"{name}.csr"
    if not force:
        for path in (key_file, csr_file):
            if path.exists():
                raise PkiError(f"{path} exists already (use --force to replace it)")
    key = keys.generate_private_key(key_type)
    csr = build_csr(name, role, key, sans)
    atomic_write(key_file, keys.private_key_pem(key), mode=SECRET_MODE)
    atomic_write(csr_file, csr.public_bytes(serialization.Encoding.PEM))
    return CsrFiles(name, role, key_file, csr_file, public_key_fingerprint(key.public_key()))


def load_csr(data: bytes) -> x509.CertificateSigningRequest:
    try:
        return x509.load_pem_x509_csr(data)
    except ValueError:
        try:
            return x509.load_der_x509_csr(data)
        except ValueError:
            raise PkiError("not a certificate signing request (PEM or DER)") from None


def inspect_csr(
    data: bytes, *, expected_name: str | None = None, expected_role: Role | None = None
) -> CsrRequest:
    """Parse and check a CSR: signature, subject form, safe name, known role, expectations."""
    csr = load_csr(data)
    try:
        signature_ok = csr.is_signature_valid
    except Exception as exc:  # unsupported key or algorithm inside a hostile CSR
        raise PkiError(f"cannot check the CSR signature: {exc}") from None
    if not signature_ok:
        raise PkiError("CSR signature is invalid: the request was altered or not signed by its key")
    for attribute in csr.subject:
        if attribute.oid not in _ALLOWED_SUBJECT_OIDS:
            raise PkiError(
                f"CSR subject {csr.subject.rfc4514_string()!r} holds an unexpected attribute "
                f"{attribute.oid._name}; expected only O, OU (role) and CN (name)"
            )
    organization = csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    if any(a.value != profiles.ORGANIZATION for a in organization) or len(organization) > 1:
        raise PkiError(f"CSR subject organisation must be {profiles.ORGANIZATION!r}")
    try:
        name = name_from_subject(csr.subject)
        role = role_from_subject(csr.subject)
    except VerificationError as exc:
        raise PkiError(f"CSR subject: {exc.message.split(': ', 1)[-1]}") from None
    if expected_name is not None and name != expected_name:
        raise PkiError(f"CSR asks for name {name!r}, expected {expected_name!r}")
    if expected_role is not None and role != expected_role:
        raise PkiError(f"CSR asks for role {role.value!r}, expected {expected_role.value!r}")
    try:
        san_ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        requested: tuple[x509.GeneralName, ...] = tuple(san_ext.value)
    except x509.ExtensionNotFound:
        requested = ()
    except ValueError as exc:
        raise PkiError(f"CSR extensions are malformed: {exc}") from None
    for general in requested:
        if not isinstance(general, (x509.DNSName, x509.IPAddress)):
            raise PkiError(f"CSR asks for an unsupported SAN {profiles.san_text(general)}")
    return CsrRequest(csr, name, role, requested, public_key_fingerprint(csr.public_key()))
