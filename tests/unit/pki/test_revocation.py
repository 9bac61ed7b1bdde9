"""CRL handling: revoke updates it atomically; the checker reloads it and fails closed."""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509

from openfl_like.core.errors import ConfigError, PkiError
from openfl_like.core.ids import Role
from openfl_like.pki import CertificateAuthority, PkiStore, RevocationChecker
from openfl_like.pki.pem import load_certificate
from openfl_like.pki.revocation import build_crl, crl_entries, crl_number, crl_pem


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


# -- expiry and rollback: fail closed, logged once per change, refresh restores service --------


def _resign(ca: CertificateAuthority, *, number: int, validity: timedelta) -> None:
    """Write a CRL with a chosen number and validity (what an attacker or an old backup gives)."""
    crl = x509.load_pem_x509_crl(ca.store.crl_path.read_bytes())
    old = build_crl(ca.signing_cert, ca._signing_key, crl_entries(crl), number=number,
                    now=datetime.now(timezone.utc) - timedelta(days=2), validity=validity)
    ca.store.crl_path.write_bytes(crl_pem(old))
    os.utime(ca.store.crl_path, ns=(time.time_ns(), time.time_ns()))


def test_an_expired_crl_is_refused_and_refresh_restores_it(
    store: PkiStore, ca: CertificateAuthority, caplog: pytest.LogCaptureFixture
) -> None:
    # Prepare: a checker that accepts the current CRL
    cert = load_certificate(ca.certify("col", Role.COLLABORATOR).cert_path)
    checker = RevocationChecker(store.crl_path, store.signing_cert_path)
    assert not checker.is_revoked(cert)
    _resign(ca, number=5, validity=timedelta(days=1))  # signed two days ago, valid for one

    # Execute / Assert: refused on every call, logged once
    with caplog.at_level(logging.ERROR, logger="openfl_like"):
        for _ in range(3):
            with pytest.raises(PkiError, match=r"expired on .*fx pki crl refresh"):
                checker.is_revoked(cert)
    assert len([r for r in caplog.records if "unusable" in r.getMessage()]) == 1

    # a refresh (same entries, next number, fresh nextUpdate) restores service
    ca.refresh_crl()
    assert not checker.is_revoked(cert)
    assert crl_number(x509.load_pem_x509_crl(store.crl_path.read_bytes())) == 6


def test_a_crl_that_expires_while_loaded_is_refused(
    store: PkiStore, ca: CertificateAuthority
) -> None:
    cert = load_certificate(ca.certify("col", Role.COLLABORATOR).cert_path)
    later = datetime.now(timezone.utc)
    checker = RevocationChecker(store.crl_path, store.signing_cert_path, now=lambda: later)
    assert not checker.is_revoked(cert)

    later += timedelta(days=400)  # past the default 365-day validity, same file
    with pytest.raises(PkiError, match="expired"):
        checker.is_revoked(cert)


def test_a_lower_crl_number_is_refused_as_a_rollback(
    store: PkiStore, ca: CertificateAuthority
) -> None:
    # Prepare: col is revoked in CRL number 2; an attacker restores the older number-1 list
    cert = load_certificate(ca.certify("col", Role.COLLABORATOR).cert_path)
    older = store.crl_path.read_bytes()
    checker = RevocationChecker(store.crl_path, store.signing_cert_path)
    ca.revoke("col")
    newer = store.crl_path.read_bytes()
    assert checker.is_revoked(cert)

    # Execute
    store.crl_path.write_bytes(older)
    os.utime(store.crl_path, ns=(1, 1))

    # Assert: refused (col must not come back), and every caller with it
    with pytest.raises(PkiError, match=r"number 1, lower than 2 .*\(rollback\)"):
        checker.is_revoked(cert)
    # the same number again (the current list put back) is accepted
    store.crl_path.write_bytes(newer)
    os.utime(store.crl_path, ns=(2, 2))
    assert checker.is_revoked(cert)


def test_revoke_and_refresh_always_raise_the_number(
    store: PkiStore, ca: CertificateAuthority
) -> None:
    ca.certify("a", Role.COLLABORATOR)
    numbers = [crl_number(x509.load_pem_x509_crl(store.crl_path.read_bytes()))]
    for step in (lambda: ca.revoke("a"), ca.refresh_crl, ca.refresh_crl):
        step()
        numbers.append(crl_number(x509.load_pem_x509_crl(store.crl_path.read_bytes())))
    assert numbers == [1, 2, 3, 4]
    crl = x509.load_pem_x509_crl(store.crl_path.read_bytes())
    assert len(crl) == 1  # the revoked entry survived the refreshes


def test_refresh_sets_the_validity(store: PkiStore, ca: CertificateAuthority) -> None:
    crl = ca.refresh_crl(validity=timedelta(days=7))
    assert crl.next_update_utc is not None
    assert timedelta(days=6.9) < crl.next_update_utc - crl.last_update_utc <= timedelta(days=7)
    with pytest.raises(ConfigError):
        ca.refresh_crl(validity=timedelta(0))
