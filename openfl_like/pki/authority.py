"""CertificateAuthority: a two-tier CA (root -> signing CA -> participants) kept in a PkiStore.

The root CA signs only the signing CA (pathlen=1 on the root, pathlen=0 on the signing CA); the
signing CA issues every participant certificate and the CRL. Extensions come from
``profiles`` by role, never from a CSR. Every check runs before the first byte is written, and
every file is written atomically, so a refused request leaves the store untouched.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from openfl_like.core.errors import ConfigError, PkiError
from openfl_like.core.fsutil import SECRET_MODE, atomic_write
from openfl_like.core.ids import Role, check_name
from openfl_like.pki import keys, profiles
from openfl_like.pki.csr import CsrRequest, inspect_csr
from openfl_like.pki.identity import certificate_fingerprint
from openfl_like.pki.pem import certificate_pem, load_certificate
from openfl_like.pki.revocation import (
    RevokedEntry,
    build_crl,
    crl_entries,
    crl_number,
    crl_pem,
    load_crl,
)
from openfl_like.pki.store import PkiStore


@dataclass(frozen=True)
class IssuedCertificate:
    """What the CA wrote: the certificate (and the key when the CA made it)."""

    name: str
    role: Role
    cert_path: Path
    key_path: Path | None
    serial: int
    fingerprint_sha256: str
    not_after: datetime
    sans: tuple[str, ...] = ()


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _build_certificate(
    subject: x509.Name, issuer: x509.Name, public_key: x509.CertificatePublicKeyTypes,
    signer: keys.PrivateKey, extensions: list[profiles.ExtensionSpec],
    not_before: datetime, not_after: datetime,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    for spec in extensions:
        builder = builder.add_extension(spec.value, critical=spec.critical)
    return builder.sign(signer, keys.SIGNATURE_HASH())


def _aware(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None:
        raise ConfigError(f"{what} must be timezone-aware")
    return moment.astimezone(timezone.utc)


class CertificateAuthority:
    """The signing side of the PKI. Create with ``init`` (new CA) or ``load`` (existing)."""

    def __init__(
        self, store: PkiStore, *, root_cert: x509.Certificate,
        signing_cert: x509.Certificate, signing_key: keys.PrivateKey,
    ) -> None:
        self.store = store
        self.root_cert = root_cert
        self.signing_cert = signing_cert
        self._signing_key = signing_key

    # -- creation -------------------------------------------------------------------------------
    @classmethod
    def init(
        cls, store: PkiStore, *, key_type: str = "ec", passphrase: bytes | None = None,
        force: bool = False,
    ) -> CertificateAuthority:
        """Make a root CA and a signing CA in ``store`` plus an empty CRL and the CA bundle."""
        keys.check_key_type(key_type)
        existing = [p for p in store.ca_paths if p.exists()]
        if existing and not force and store.kind() == "participant":
            raise PkiError(
                f"{store.describe_kind()}: it trusts the CA it imported, and `fx pki verify` "
                "and `fx pki list` work in it; `fx pki init` belongs on the CA host (--force "
                "would replace the imported CA with a new one)"
            )
        if existing and not force:
            raise PkiError(
                f"a CA exists already in {store.root} ({existing[0].name}); "
                "use --force to replace it (every issued certificate becomes invalid)"
            )
        now = _now()
        start = now - profiles.CLOCK_SKEW
        token = secrets.token_hex(4)
        root_key = keys.generate_private_key(key_type)
        root_name = profiles.ca_subject(f"openfl_like Root CA {token}")
        root_cert = _build_certificate(
            root_name, root_name, root_key.public_key(), root_key,
            profiles.ca_extensions(root_key.public_key(), path_length=1, issuer_key=None),
            start, now + profiles.ROOT_VALIDITY,
        )
        signing_key = keys.generate_private_key(key_type)
        signing_cert = _build_certificate(
            profiles.ca_subject(f"openfl_like Signing CA {token}"), root_name,
            signing_key.public_key(), root_key,
            profiles.ca_extensions(
                signing_key.public_key(), path_length=0, issuer_key=root_key.public_key()
            ),
            start, now + profiles.SIGNING_VALIDITY,
        )
        crl = build_crl(signing_cert, signing_key, [], number=1, now=now)
        atomic_write(store.root_key_path, keys.private_key_pem(root_key, passphrase),
                     mode=SECRET_MODE)
        atomic_write(store.signing_key_path, keys.private_key_pem(signing_key, passphrase),
                     mode=SECRET_MODE)
        atomic_write(store.root_cert_path, certificate_pem(root_cert))
        atomic_write(store.signing_cert_path, certificate_pem(signing_cert))
        atomic_write(store.ca_bundle_path,
                     certificate_pem(signing_cert) + certificate_pem(root_cert))
        atomic_write(store.crl_path, crl_pem(crl))
        return cls(store, root_cert=root_cert, signing_cert=signing_cert, signing_key=signing_key)

    @classmethod
    def load(cls, store: PkiStore, *, passphrase: bytes | None = None) -> CertificateAuthority:
        """The CA of ``store``; raises PkiError when there is none or its files are unusable."""
        if store.kind() == "participant":
            raise PkiError(f"{store.describe_kind()}: certificates are signed and revoked on "
                           "the CA host (--pki-dir of the CA's store)")
        if not store.signing_cert_path.exists() and not store.root_cert_path.exists():
            raise PkiError(f"no CA in {store.root}: run `fx pki init` first")
        root_cert = load_certificate(store.root_cert_path, "root CA certificate")
        signing_cert = load_certificate(store.signing_cert_path, "signing CA certificate")
        signing_key = keys.load_private_key(store.signing_key_path, passphrase)
        if signing_key.public_key().public_numbers() != signing_cert.public_key().public_numbers():
            raise PkiError(f"{store.signing_key_path} does not match {store.signing_cert_path}")
        try:
            signing_cert.verify_directly_issued_by(root_cert)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise PkiError(f"signing CA is not issued by the root CA: {exc}") from None
        return cls(store, root_cert=root_cert, signing_cert=signing_cert, signing_key=signing_key)

    # -- issuing --------------------------------------------------------------------------------
    def issue(
        self, name: str, role: Role, public_key: x509.CertificatePublicKeyTypes,
        sans: Sequence[x509.GeneralName] | None = None, *,
        not_before: datetime | None = None, not_after: datetime | None = None,
    ) -> x509.Certificate:
        """Build and sign a participant certificate; writes nothing."""
        check_name(name)
        if not isinstance(public_key, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey)):
            raise PkiError("unsupported public key type (expected EC or RSA)")
        if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size < 2048:
            raise PkiError(f"RSA key of {public_key.key_size} bits is too weak (>= 2048 needed)")
        now = _now()
        start = _aware(not_before, "not_before") if not_before else now - profiles.CLOCK_SKEW
        end = _aware(not_after, "not_after") if not_after else now + profiles.LEAF_VALIDITY
        end = min(end, self.signing_cert.not_valid_after_utc)
        if end <= start:
            raise ConfigError("certificate validity is empty: not_after must follow not_before")
        general = list(sans) if sans is not None else (
            profiles.server_sans(None) if role.is_server else profiles.client_sans(name, role)
        )
        return _build_certificate(
            profiles.leaf_subject(name, role), self.signing_cert.subject, public_key,
            self._signing_key,
            profiles.leaf_extensions(role, public_key, self._signing_key.public_key(), general),
            start, end,
        )

    def certify(
        self, name: str, role: Role | str, sans: Sequence[str] | None = None, *,
        force: bool = False, not_before: datetime | None = None, not_after: datetime | None = None,
        key_type: str = "ec",
    ) -> IssuedCertificate:
        """Key + certificate for ``name`` in one step (single-host workspaces and tests)."""
        check_name(name)
        role = Role.parse(str(role))
        keys.check_key_type(key_type)
        general = profiles.server_sans(sans) if role.is_server else profiles.client_sans(name, role)
        cert_path, key_path = self.store.cert_path(name), self.store.key_path(name)
        self._refuse_existing(name, [cert_path, key_path], force=force)
        key = keys.generate_private_key(key_type)
        cert = self.issue(name, role, key.public_key(), general,
                          not_before=not_before, not_after=not_after)
        self._supersede(cert_path)
        atomic_write(key_path, keys.private_key_pem(key), mode=SECRET_MODE)
        atomic_write(cert_path, certificate_pem(cert))
        return self._issued(name, role, cert, cert_path, key_path)

    def sign_csr(
        self, csr_pem: bytes, *, expected_name: str | None = None,
        expected_role: Role | None = None, force: bool = False,
    ) -> IssuedCertificate:
        """Check a CSR (signature, subject, name, role) and issue its certificate into the store."""
        request = inspect_csr(csr_pem, expected_name=expected_name, expected_role=expected_role)
        general = self.planned_sans(request)
        cert_path = self.store.cert_path(request.name)
        self._refuse_existing(request.name, [cert_path], force=force)
        cert = self.issue(request.name, request.role, request.csr.public_key(), general)
        self._supersede(cert_path)
        atomic_write(cert_path, certificate_pem(cert))
        return self._issued(request.name, request.role, cert, cert_path, None)

    @staticmethod
    def planned_sans(request: CsrRequest) -> list[x509.GeneralName]:
        """The SANs the CA will write for a CSR: requested hosts for servers (re-validated, or
        the defaults), the name for clients. Shown to the operator before signing."""
        if not request.role.is_server:
            return profiles.client_sans(request.name, request.role)
        hosts = [str(g.value) for g in request.requested_sans]
        return profiles.server_sans(hosts or None)

    # -- revocation -----------------------------------------------------------------------------
    def revoke(self, name: str) -> None:
        """Add ``name``'s current certificate to the CRL (no-op when it is revoked already)."""
        cert = load_certificate(self.store.cert_path(name), f"certificate of {name!r}")
        self._revoke_serial(cert, reason=None)

    def refresh_crl(
        self, *, validity: timedelta = profiles.CRL_VALIDITY
    ) -> x509.CertificateRevocationList:
        """Re-sign the CRL with the same entries, the next CRL number and a fresh nextUpdate.

        Servers refuse a CRL past its nextUpdate (and so every caller): refresh before then.
        """
        if validity <= timedelta(0):
            raise ConfigError("CRL validity must be positive")
        crl = load_crl(self.store.crl_path, self.signing_cert)
        return self._write_crl(crl_entries(crl), crl_number(crl), validity=validity)

    def _write_crl(
        self, entries: list[RevokedEntry], previous_number: int, *,
        validity: timedelta = profiles.CRL_VALIDITY,
    ) -> x509.CertificateRevocationList:
        """Every CRL this CA writes has a number above the one it replaces (servers refuse a
        lower number as a rollback)."""
        new = build_crl(self.signing_cert, self._signing_key, entries,
                        number=previous_number + 1, validity=validity)
        atomic_write(self.store.crl_path, crl_pem(new))
        return new

    def is_revoked(self, cert: x509.Certificate) -> bool:
        crl = load_crl(self.store.crl_path, self.signing_cert)
        return crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None

    def _revoke_serial(self, cert: x509.Certificate, *, reason: x509.ReasonFlags | None) -> None:
        if cert.issuer != self.signing_cert.subject:
            raise PkiError(
                f"certificate {cert.subject.rfc4514_string()} was not issued by this CA"
            )
        crl = load_crl(self.store.crl_path, self.signing_cert)
        entries = crl_entries(crl)
        if any(e.serial == cert.serial_number for e in entries):
            return
        entries.append(RevokedEntry(cert.serial_number, _now(), reason))
        self._write_crl(entries, crl_number(crl))

    def _supersede(self, cert_path: Path) -> None:
        """Replacing a certificate (--force) revokes the old one, so it cannot be used again."""
        if not cert_path.exists():
            return
        try:
            old = load_certificate(cert_path)
        except PkiError:
            return  # a corrupt file being replaced cannot be presented by anyone
        if old.issuer == self.signing_cert.subject:
            self._revoke_serial(old, reason=x509.ReasonFlags.superseded)

    def _refuse_existing(self, name: str, paths: list[Path], *, force: bool) -> None:
        if force:
            return
        for path in paths:
            if path.exists():
                raise PkiError(
                    f"{name!r} exists already ({path}); use --force to replace it"
                )

    def _issued(
        self, name: str, role: Role, cert: x509.Certificate, cert_path: Path,
        key_path: Path | None,
    ) -> IssuedCertificate:
        return IssuedCertificate(
            name=name, role=role, cert_path=cert_path, key_path=key_path,
            serial=cert.serial_number, fingerprint_sha256=certificate_fingerprint(cert),
            not_after=cert.not_valid_after_utc,
            sans=tuple(profiles.san_text(g) for g in _sans_of(cert)),
        )


def _sans_of(cert: x509.Certificate) -> list[x509.GeneralName]:
    try:
        return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return []
