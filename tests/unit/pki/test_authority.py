"""The CA's output, proved with cryptography's x509 verification API as an independent oracle."""

from __future__ import annotations

import ipaddress
import socket
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import DNSName, IPAddress, PolicyBuilder, Store
from cryptography.x509.verification import VerificationError as OracleError

from openfl_like.core.errors import ConfigError, PkiError
from openfl_like.core.ids import Role
from openfl_like.pki import CertificateAuthority, IssuedCertificate, PkiStore
from openfl_like.pki.pem import load_certificate

SERVER_ROLES = [Role.AGGREGATOR, Role.DIRECTOR]
CLIENT_ROLES = [Role.COLLABORATOR, Role.ENVOY, Role.EXPERIMENTER]


def ext(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.Extension:
    return cert.extensions.get_extension_for_class(kind)


def chain(store: PkiStore) -> tuple[x509.Certificate, x509.Certificate]:
    return load_certificate(store.root_cert_path), load_certificate(store.signing_cert_path)


def policy(store: PkiStore) -> PolicyBuilder:
    root, _ = chain(store)
    return PolicyBuilder().store(Store([root]))


@pytest.mark.parametrize("role", SERVER_ROLES)
def test_server_certificate_passes_the_server_verifier_for_every_default_san(
    store: PkiStore, ca: CertificateAuthority, role: Role
) -> None:
    # Prepare
    issued = ca.certify("agg-1", role)
    leaf = load_certificate(issued.cert_path)
    _, signing = chain(store)
    # Execute / Assert
    for subject in (DNSName("localhost"), IPAddress(ipaddress.ip_address("127.0.0.1"))):
        verified = policy(store).build_server_verifier(subject).verify(leaf, [signing])
        assert [c.subject for c in verified] == [
            leaf.subject, signing.subject, chain(store)[0].subject
        ]
    sans = ext(leaf, x509.SubjectAlternativeName).value
    assert socket.gethostname().lower() in sans.get_values_for_type(x509.DNSName)


@pytest.mark.parametrize("role", CLIENT_ROLES)
def test_client_certificate_passes_the_client_verifier(
    store: PkiStore, ca: CertificateAuthority, role: Role
) -> None:
    issued = ca.certify("site_1", role)
    leaf = load_certificate(issued.cert_path)
    _, signing = chain(store)

    verified = policy(store).build_client_verifier().verify(leaf, [signing])

    assert x509.UniformResourceIdentifier(f"urn:openfl-like:{role.value}:site_1") in (
        verified.subjects or []
    )
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "site_1"
    assert leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == (
        role.value
    )


def test_server_certificate_fails_the_client_verifier_and_vice_versa(
    store: PkiStore, ca: CertificateAuthority
) -> None:
    server = load_certificate(ca.certify("agg", Role.AGGREGATOR).cert_path)
    client = load_certificate(ca.certify("col", Role.COLLABORATOR, ["localhost"]).cert_path)
    _, signing = chain(store)

    with pytest.raises(OracleError, match="EKU"):
        policy(store).build_client_verifier().verify(server, [signing])
    with pytest.raises(OracleError):
        policy(store).build_server_verifier(DNSName("localhost")).verify(client, [signing])


def test_certificate_of_another_ca_fails_the_oracle(
    store: PkiStore, ca: CertificateAuthority, other_ca: CertificateAuthority
) -> None:
    foreign = load_certificate(other_ca.certify("col", Role.COLLABORATOR).cert_path)

    with pytest.raises(OracleError):
        policy(store).build_client_verifier().verify(foreign, [other_ca.signing_cert])


def test_ca_extensions_are_spelled_out_with_criticality(
    store: PkiStore, ca: CertificateAuthority
) -> None:
    root, signing = chain(store)
    for cert, pathlen in ((root, 1), (signing, 0)):
        constraints = ext(cert, x509.BasicConstraints)
        assert constraints.critical and constraints.value.ca
        assert constraints.value.path_length == pathlen
        usage = ext(cert, x509.KeyUsage)
        assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
        assert not usage.value.digital_signature
        assert ext(cert, x509.SubjectKeyIdentifier).value == (
            x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
        )
        assert isinstance(cert.signature_hash_algorithm, hashes.SHA384)
        assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
        assert cert.public_key().curve.name == "secp384r1"
    assert root.issuer == root.subject
    assert signing.issuer == root.subject
    assert ext(signing, x509.AuthorityKeyIdentifier).value.key_identifier == (
        ext(root, x509.SubjectKeyIdentifier).value.digest
    )
    # Validity: root ~10 years, signing CA ~5 years, tz-aware.
    assert root.not_valid_after_utc - root.not_valid_before_utc > timedelta(days=9 * 365)
    assert timedelta(days=4 * 365) < (
        signing.not_valid_after_utc - signing.not_valid_before_utc
    ) < timedelta(days=6 * 365)


@pytest.mark.parametrize(
    ("role", "eku"),
    [(Role.AGGREGATOR, ExtendedKeyUsageOID.SERVER_AUTH),
     (Role.DIRECTOR, ExtendedKeyUsageOID.SERVER_AUTH),
     (Role.COLLABORATOR, ExtendedKeyUsageOID.CLIENT_AUTH),
     (Role.ENVOY, ExtendedKeyUsageOID.CLIENT_AUTH),
     (Role.EXPERIMENTER, ExtendedKeyUsageOID.CLIENT_AUTH)],
)
def test_leaf_extensions_follow_the_role(
    ca: CertificateAuthority, role: Role, eku: x509.ObjectIdentifier
) -> None:
    issued = ca.certify("p1", role)
    leaf = load_certificate(issued.cert_path)

    constraints = ext(leaf, x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    usage = ext(leaf, x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature
    assert not usage.value.key_encipherment  # EC key
    assert not usage.value.key_cert_sign and not usage.value.crl_sign
    assert list(ext(leaf, x509.ExtendedKeyUsage).value) == [eku]
    assert ext(leaf, x509.AuthorityKeyIdentifier).value.key_identifier == (
        ext(ca.signing_cert, x509.SubjectKeyIdentifier).value.digest
    )
    assert ext(leaf, x509.SubjectKeyIdentifier).value == (
        x509.SubjectKeyIdentifier.from_public_key(leaf.public_key())
    )
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert timedelta(days=364) < lifetime < timedelta(days=367)
    assert issued.not_after == leaf.not_valid_after_utc
    assert issued.not_after.tzinfo is not None
    assert issued.serial == leaf.serial_number


def test_given_sans_become_dns_and_ip_sans(ca: CertificateAuthority) -> None:
    issued = ca.certify("agg", Role.AGGREGATOR, ["agg.example.org", "10.0.0.7", "::1"])
    sans = ext(load_certificate(issued.cert_path), x509.SubjectAlternativeName).value

    assert sans.get_values_for_type(x509.DNSName) == ["agg.example.org"]
    assert sans.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.0.0.7"), ipaddress.ip_address("::1")
    ]


def test_rsa_option_gives_rsa_3072_with_key_encipherment(store: PkiStore) -> None:
    ca = CertificateAuthority.init(store, key_type="rsa")
    leaf = load_certificate(ca.certify("agg", Role.AGGREGATOR, key_type="rsa").cert_path)

    for cert in (ca.root_cert, ca.signing_cert, leaf):
        assert isinstance(cert.public_key(), rsa.RSAPublicKey)
        assert cert.public_key().key_size == 3072
        assert isinstance(cert.signature_hash_algorithm, hashes.SHA384)
    assert ext(leaf, x509.KeyUsage).value.key_encipherment
    policy(store).build_server_verifier(DNSName("localhost")).verify(leaf, [ca.signing_cert])


def test_serials_are_random_and_distinct(ca: CertificateAuthority) -> None:
    serials = {ca.certify(f"c{i}", Role.COLLABORATOR).serial for i in range(8)}
    serials |= {ca.root_cert.serial_number, ca.signing_cert.serial_number}

    assert len(serials) == 10
    assert all(s.bit_length() > 64 for s in serials)


def test_private_keys_are_0600_and_certificates_not_secret(
    store: PkiStore, ca: CertificateAuthority
) -> None:
    issued = ca.certify("col", Role.COLLABORATOR)

    assert issued.key_path is not None
    for key in (store.root_key_path, store.signing_key_path, issued.key_path):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(issued.cert_path.stat().st_mode) == 0o644
    assert not list(store.root.rglob("*.tmp"))


def test_nothing_is_overwritten_without_force(store: PkiStore, ca: CertificateAuthority) -> None:
    first = ca.certify("col", Role.COLLABORATOR)
    before = first.cert_path.read_bytes(), first.key_path.read_bytes()  # type: ignore[union-attr]

    with pytest.raises(PkiError, match="exists already"):
        ca.certify("col", Role.COLLABORATOR)
    with pytest.raises(PkiError, match="CA exists already"):
        CertificateAuthority.init(store)

    assert (first.cert_path.read_bytes(), first.key_path.read_bytes()) == before  # type: ignore[union-attr]


def test_force_replaces_and_revokes_the_superseded_certificate(ca: CertificateAuthority) -> None:
    old = ca.certify("col", Role.COLLABORATOR)
    old_cert = load_certificate(old.cert_path)

    new = ca.certify("col", Role.COLLABORATOR, force=True)

    assert new.serial != old.serial
    assert ca.is_revoked(old_cert)
    assert not ca.is_revoked(load_certificate(new.cert_path))


def test_explicit_validity_window_is_honoured_and_capped(ca: CertificateAuthority) -> None:
    start = datetime(2020, 1, 1, tzinfo=timezone.utc)
    issued = ca.certify("old", Role.COLLABORATOR, not_before=start,
                        not_after=start + timedelta(days=2))
    capped = ca.certify("long", Role.COLLABORATOR,
                        not_after=datetime.now(timezone.utc) + timedelta(days=100 * 365))

    assert load_certificate(issued.cert_path).not_valid_before_utc == start
    assert capped.not_after == ca.signing_cert.not_valid_after_utc
    with pytest.raises(ConfigError, match="timezone-aware"):
        ca.certify("naive", Role.COLLABORATOR, not_after=datetime(2030, 1, 1))


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".hidden", "a..b", "x" * 65, "sp ace"])
def test_unsafe_names_are_refused_before_anything_is_written(
    store: PkiStore, ca: CertificateAuthority, name: str
) -> None:
    before = sorted(store.root.rglob("*"))

    with pytest.raises(ConfigError, match="invalid name"):
        ca.certify(name, Role.COLLABORATOR)

    assert sorted(store.root.rglob("*")) == before


def test_unknown_role_is_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(ConfigError, match="unknown role 'admin'"):
        ca.certify("x", "admin")


def test_bad_san_is_refused(ca: CertificateAuthority) -> None:
    with pytest.raises(ConfigError, match="invalid SAN"):
        ca.certify("agg", Role.AGGREGATOR, ["bad host/name"])


def test_passphrase_encrypts_ca_keys(store: PkiStore) -> None:
    CertificateAuthority.init(store, passphrase=b"s3cret")

    assert b"ENCRYPTED" in store.signing_key_path.read_bytes()
    assert b"ENCRYPTED" in store.root_key_path.read_bytes()
    with pytest.raises(PkiError, match="is encrypted"):
        CertificateAuthority.load(store)
    with pytest.raises(PkiError, match="wrong passphrase"):
        CertificateAuthority.load(store, passphrase=b"nope")
    issued = CertificateAuthority.load(store, passphrase=b"s3cret").certify(
        "col", Role.COLLABORATOR
    )
    assert isinstance(issued, IssuedCertificate)
    assert b"ENCRYPTED" not in issued.key_path.read_bytes()  # type: ignore[union-attr]


def test_load_without_a_ca_says_run_init(store: PkiStore) -> None:
    with pytest.raises(PkiError, match="fx pki init"):
        CertificateAuthority.load(store)


@pytest.mark.parametrize("victim", ["signing_cert_path", "signing_key_path", "root_cert_path"])
def test_corrupt_ca_files_are_reported(
    store: PkiStore, ca: CertificateAuthority, victim: str
) -> None:
    path: Path = getattr(store, victim)
    path.write_bytes(b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")

    with pytest.raises(PkiError, match="corrupt"):
        CertificateAuthority.load(store)


def test_mismatched_signing_key_is_refused(store: PkiStore, ca: CertificateAuthority) -> None:
    store.signing_key_path.write_bytes(store.root_key_path.read_bytes())

    with pytest.raises(PkiError, match="does not match"):
        CertificateAuthority.load(store)
