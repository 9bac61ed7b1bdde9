"""Fixtures for the PKI unit tests: a fresh CA per test (init takes ~20 ms) and a cert builder."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from openfl_like.pki import CertificateAuthority, PkiStore
from openfl_like.pki.keys import load_private_key
from openfl_like.pki.pem import certificate_pem


@pytest.fixture
def store(tmp_path: Path) -> PkiStore:
    return PkiStore(tmp_path / "pki")


@pytest.fixture
def ca(store: PkiStore) -> CertificateAuthority:
    return CertificateAuthority.init(store)


@pytest.fixture
def other_ca(tmp_path: Path) -> CertificateAuthority:
    """A second, unrelated CA: its certificates must never pass for ours."""
    return CertificateAuthority.init(PkiStore(tmp_path / "other-pki"))


LeafMaker = Callable[..., Path]


@pytest.fixture
def make_leaf(store: PkiStore, ca: CertificateAuthority) -> LeafMaker:
    """Hand-build a leaf signed by the store's signing CA, with any subject and extensions.

    Our CA would never issue these; they exist to prove that verification names each check.
    """

    def build(
        name: str, *, ou: str | None = "collaborator", ca_flag: bool = False,
        digital_signature: bool = True, eku: list[x509.ObjectIdentifier] | None = None,
    ) -> Path:
        signing_key = load_private_key(store.signing_key_path)
        key = ec.generate_private_key(ec.SECP384R1())
        attributes = [x509.NameAttribute(NameOID.COMMON_NAME, name)]
        if ou is not None:
            attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
        now = datetime.now(timezone.utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attributes))
            .issuer_name(ca.signing_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca_flag, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=digital_signature, content_commitment=False,
                    key_encipherment=not digital_signature, data_encipherment=False,
                    key_agreement=False, key_cert_sign=False, crl_sign=False,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(eku or [ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
        )
        cert = builder.sign(signing_key, hashes.SHA384())
        path = store.root / "handmade" / f"{name}.crt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(certificate_pem(cert))
        return path

    return build
