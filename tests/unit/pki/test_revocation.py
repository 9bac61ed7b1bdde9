"""CRL handling: revoke updates it atomically; the checker reloads it and fails closed."""

from __future__ import annotations

import os

import pytest
from cryptography import x509

from openfl_like.core.errors import PkiError
from openfl_like.core.ids import Role
from openfl_like.pki import CertificateAuthority, PkiStore, RevocationChecker
from openfl_like.pki.pem import load_certificate
from openfl_like.pki.revocation import crl_number


def test_init_writes_an_empty_signed_crl(store: PkiStore, ca: CertificateAuthority) -> None:
    crl = x509.load_pem_x509_crl(store.crl_path.read_bytes())

    assert len(crl) == 0
    assert crl.is_signature_valid(ca.signing_cert.public_key())
    assert crl.next_update_utc is not None and crl.next_update_utc > crl.last_update_utc


def test_revoke_adds_the_serial_and_bumps_the_crl_number(
    store: PkiStore, ca: CertificateAuthority
) -> None:
    a = ca.certify("a", Role.COLLABORATOR)
    b = ca.certify("b", Role.ENVOY)

    ca.revoke("a")
    ca.revoke("a")  # idempotent
    ca.revoke("b")

    crl = x509.load_pem_x509_crl(store.crl_path.read_bytes())
    assert {r.serial_number for r in crl} == {a.serial, b.serial}
    assert crl_number(crl) == 3


def test_revoke_unknown_name_is_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(PkiError, match="not found"):
        ca.revoke("ghost")


def test_checker_sees_a_revocation_without_restart(
    store: PkiStore, ca: CertificateAuthority
) -> None:
    # Prepare
    cert = load_certificate(ca.certify("col", Role.COLLABORATOR).cert_path)
    checker = RevocationChecker(store.crl_path, store.signing_cert_path)
    assert not checker.is_revoked(cert)
    # Execute
    ca.revoke("col")
    # Assert
    assert checker.is_revoked(cert)
    assert cert.serial_number in checker.revoked_serials


def test_checker_fails_closed_on_missing_or_forged_crl(
    store: PkiStore, ca: CertificateAuthority, other_ca: CertificateAuthority
) -> None:
    cert = load_certificate(ca.certify("col", Role.COLLABORATOR).cert_path)
    checker = RevocationChecker(store.crl_path, store.signing_cert_path)

    store.crl_path.write_bytes(other_ca.store.crl_path.read_bytes())
    os.utime(store.crl_path, ns=(1, 1))  # make sure the change is seen even on coarse clocks
    with pytest.raises(PkiError, match="not signed by the signing CA"):
        checker.is_revoked(cert)

    store.crl_path.unlink()
    with pytest.raises(PkiError, match="CRL unavailable"):
        checker.is_revoked(cert)


def test_checker_refuses_a_corrupt_crl_at_start(store: PkiStore, ca: CertificateAuthority) -> None:
    store.crl_path.write_text("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n")

    with pytest.raises(PkiError, match="corrupt CRL"):
        RevocationChecker(store.crl_path, store.signing_cert_path)
