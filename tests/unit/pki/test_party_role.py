"""The vertical ``party`` role: one certificate both serves its peer and calls it, so it carries
serverAuth and clientAuth, and host SANs; openssl agrees it is fit for both purposes."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from openfl_like.core.ids import Role
from openfl_like.pki import CertificateAuthority, PkiStore, verify_certificate
from openfl_like.pki.pem import load_certificate

from .conftest import LeafMaker
from .test_verify import failed_check

OPENSSL = shutil.which("openssl")


def test_a_party_certificate_is_a_server_and_a_client(
    store: PkiStore, ca: CertificateAuthority
) -> None:
    issued = ca.certify("bank", Role.PARTY, ["bank.example", "10.0.0.7"])

    cert = load_certificate(issued.cert_path)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert sans.get_values_for_type(x509.DNSName) == ["bank.example"]
    assert verify_certificate(issued.cert_path, store, role=Role.PARTY) == ("bank", Role.PARTY)
    assert Role.PARTY.is_server and Role.PARTY.is_client
    assert not Role.AGGREGATOR.is_client and not Role.COLLABORATOR.is_server


def test_a_party_certificate_missing_either_usage_is_refused(
    store: PkiStore, make_leaf: LeafMaker
) -> None:
    server_only = make_leaf("shop", ou="party", eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    client_only = make_leaf("shop2", ou="party", eku=[ExtendedKeyUsageOID.CLIENT_AUTH])

    assert failed_check(server_only, store) == "extended_key_usage"
    assert failed_check(client_only, store) == "extended_key_usage"


@pytest.mark.skipif(OPENSSL is None, reason="openssl command line not installed")
@pytest.mark.parametrize("purpose", ["sslserver", "sslclient"])
def test_openssl_accepts_a_party_certificate_for_both_purposes(
    store: PkiStore, ca: CertificateAuthority, purpose: str
) -> None:
    issued = ca.certify("bank", Role.PARTY, ["localhost"])

    result = subprocess.run(
        [str(OPENSSL), "verify", "-purpose", purpose, "-CAfile", str(store.ca_bundle_path),
         str(issued.cert_path)], capture_output=True, text=True, timeout=30,
    )

    assert result.returncode == 0 and result.stdout.strip().endswith(": OK"), result
