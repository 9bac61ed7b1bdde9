"""Verify a participant certificate against a store, naming the first check that fails.

Checks, in order: ``parse`` (a certificate with a usable CN), ``chain`` (a path to our root
through our signing CA), ``validity`` (now within every certificate's window), ``role`` (OU is
a known role, and the expected one when given), ``key_usage`` (a non-CA leaf with
digitalSignature), ``extended_key_usage`` (serverAuth for server roles, clientAuth for client
roles) and ``revoked`` (not on the CRL; skipped in a participant store without one). Each
failure is a ``VerificationError(check, message)``.

The chain is built and checked by cryptography's verifier (``x509.verification``: RFC 5280 path
building with the CA-profile checks of the WebPKI, pathLen, signatures), with the root as the
only trust anchor and the signing CA as the one intermediate offered: a client verifier for
client roles, a server verifier bound to the certificate's own first DNS/IP SAN for server roles
(a server certificate without one is chained as a client: TLS clients will refuse it). To
name the check that fails, it runs at a moment inside every certificate's validity window
(``validity`` is checked on its own right after) and leaves the leaf's key usage and EKU to the
named checks that follow.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timezone
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID

from openfl_like.core.errors import PkiError, VerificationError
from openfl_like.core.ids import Role
from openfl_like.pki import profiles
from openfl_like.pki.identity import participant_name, participant_role
from openfl_like.pki.pem import parse_certificate, read_file
from openfl_like.pki.store import PkiStore
from openfl_like.pki.trust import Trust, load_trust

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


def _chain_time(chain: list[x509.Certificate], now: datetime) -> datetime | None:
    """``now`` if every certificate is valid then, else the moment nearest to it inside all the
    windows (so an expiry shows up as ``validity``, not ``chain``); None when the windows do not
    overlap at all."""
    start = max(c.not_valid_before_utc for c in chain)
    end = min(c.not_valid_after_utc for c in chain)
    if start > end:
        return None
    return min(max(now, start), end)


def _server_subject(cert: x509.Certificate) -> verification.Subject | None:
    """The leaf's first DNS or IP SAN, to bind a server verifier to."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for general in sans:
        if isinstance(general, x509.DNSName):
            return verification.DNSName(general.value)
        if isinstance(general, x509.IPAddress) and not isinstance(
            general.value, (ipaddress.IPv4Network, ipaddress.IPv6Network)
        ):
            return verification.IPAddress(general.value)
    return None


def _check_chain(
    cert: x509.Certificate, signing: x509.Certificate, root: x509.Certificate, now: datetime
) -> None:
    """A path leaf -> signing CA -> root, built and verified by cryptography's verifier."""
    moment = _chain_time([cert, signing, root], now)
    if moment is None:
        # No moment at which all three are valid: no verifier can accept the path. Say
        # ``chain`` only if the leaf is not even ours; otherwise the dates are the problem and
        # the ``validity`` check names them.
        reason = _chain_reason(cert, signing, "")
        if not reason.startswith("no valid path"):
            raise VerificationError("chain", reason)
        return
    try:
        is_server = participant_role(cert).is_server
    except VerificationError:
        is_server = False  # the role check will name the problem
    subject = _server_subject(cert) if is_server else None
    ee_policy = verification.ExtensionPolicy.permit_all()  # key usage, EKU: named checks below
    if subject is not None:  # a server verifier needs the SAN it binds to
        ee_policy = ee_policy.require_present(
            x509.SubjectAlternativeName, verification.Criticality.AGNOSTIC, None
        )
    builder = (
        verification.PolicyBuilder()
        .store(verification.Store([root]))
        .time(moment)
        .max_chain_depth(1)  # at most one intermediate: our signing CA
        .extension_policies(
            ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy
        )
    )
    try:
        if subject is not None:
            path = builder.build_server_verifier(subject).verify(cert, [signing])
        else:
            path = builder.build_client_verifier().verify(cert, [signing]).chain
    except verification.VerificationError as exc:
        raise VerificationError("chain", _chain_reason(cert, signing, str(exc))) from None
    if len(path) != 3 or path[1] != signing:  # participants are issued by the signing CA only
        raise VerificationError("chain", _chain_reason(cert, signing, "not via the signing CA"))


def _chain_reason(cert: x509.Certificate, signing: x509.Certificate, detail: str) -> str:
    """Words for a refused chain; the verifier decided, this only says it plainly."""
    signing_name = signing.subject.rfc4514_string()
    if cert.issuer != signing.subject:
        return (f"certificate is issued by {cert.issuer.rfc4514_string()!r}, not by our signing "
                f"CA {signing_name!r}")
    try:
        cert.verify_directly_issued_by(signing)
    except (InvalidSignature, ValueError, TypeError):
        return f"certificate signature does not verify with {signing_name!r}"
    return f"no valid path to our root CA ({detail})"


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
    eku = _extension(cert, x509.ExtendedKeyUsage)
    for needed in profiles.required_ekus(role):
        if eku is None or needed not in eku.value:
            label = "serverAuth" if needed == ExtendedKeyUsageOID.SERVER_AUTH else "clientAuth"
            raise VerificationError(
                "extended_key_usage", f"a {role.value} certificate needs extendedKeyUsage {label}"
            )


def verify_certificate(
    cert_or_path: x509.Certificate | Path | str | bytes, store: PkiStore, *,
    role: Role | None = None, now: datetime | None = None,
) -> tuple[str, Role]:
    """Return (name, role) of a valid participant certificate; else raise VerificationError.

    Against the store's CA (CA store) or its CA bundle (participant store); revocation is
    checked whenever the store holds a CRL (see ``trust``).
    """
    return verify_with_trust(cert_or_path, load_trust(store), role=role, now=now)


def verify_with_trust(
    cert_or_path: x509.Certificate | Path | str | bytes, trust: Trust, *,
    role: Role | None = None, now: datetime | None = None,
) -> tuple[str, Role]:
    """:func:`verify_certificate` against given trust anchors (``trust.crl`` None: no
    revocation check)."""
    cert = _as_certificate(cert_or_path)
    moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    root, signing = trust.root, trust.signing
    name = participant_name(cert)
    _check_chain(cert, signing, root, moment)
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
    if trust.crl is not None:
        entry = trust.crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is not None:
            raise VerificationError(
                "revoked",
                f"certificate {name!r} was revoked on {entry.revocation_date_utc:%Y-%m-%d}",
            )
    return name, actual
