"""CSR flow: the key stays with its participant; the CA checks the request, decides extensions."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from openfl_like.core.errors import PkiError
from openfl_like.core.ids import Role
from openfl_like.pki import CertificateAuthority, PkiStore
from openfl_like.pki.csr import build_csr, inspect_csr, write_csr
from openfl_like.pki.keys import generate_private_key, load_private_key
from openfl_like.pki.pem import load_certificate


def tamper(csr_pem: bytes, old: bytes, new: bytes) -> bytes:
    """Change bytes inside the signed part of a CSR, keeping it parseable."""
    der = x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER)
    assert der.count(old) == 1 and len(old) == len(new)
    forged = x509.load_der_x509_csr(der.replace(old, new))
    return forged.public_bytes(serialization.Encoding.PEM)


def test_csr_flow_issues_a_certificate_for_the_participants_own_key(
    tmp_path: Path, store: PkiStore, ca: CertificateAuthority
) -> None:
    # Prepare: the participant's host
    files = write_csr(tmp_path / "host", "col2", Role.COLLABORATOR)
    # Execute: the CA host sees only the CSR
    issued = ca.sign_csr(files.csr_path.read_bytes())
    # Assert
    leaf = load_certificate(issued.cert_path)
    own_key = load_private_key(files.key_path)
    assert leaf.public_key() == own_key.public_key()
    assert issued.key_path is None
    assert not store.key_path("col2").exists()
    assert stat.S_IMODE(files.key_path.stat().st_mode) == 0o600
    PolicyBuilder().store(Store([ca.root_cert])).build_client_verifier().verify(
        leaf, [ca.signing_cert]
    )


def test_server_csr_carries_its_requested_hosts(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    files = write_csr(tmp_path, "agg", Role.AGGREGATOR, ["agg.example.org", "10.1.2.3"])

    request = inspect_csr(files.csr_path.read_bytes())
    issued = ca.sign_csr(files.csr_path.read_bytes())

    assert [str(g.value) for g in request.requested_sans] == ["agg.example.org", "10.1.2.3"]
    assert issued.sans == ("DNS:agg.example.org", "IP:10.1.2.3")


def test_ca_never_copies_extensions_from_the_csr(ca: CertificateAuthority) -> None:
    # A hostile CSR asks to be a CA with keyCertSign and serverAuth for a client role.
    key = ec.generate_private_key(ec.SECP384R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "collaborator"),
            x509.NameAttribute(NameOID.COMMON_NAME, "sneaky"),
        ]))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("evil.example")]),
                       critical=False)
        .sign(key, hashes.SHA384())
    )

    issued = ca.sign_csr(csr.public_bytes(serialization.Encoding.PEM))
    leaf = load_certificate(issued.cert_path)

    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    assert "DNS:evil.example" not in issued.sans


def test_tampered_csr_is_refused(tmp_path: Path, store: PkiStore, ca: CertificateAuthority) -> None:
    files = write_csr(tmp_path, "col2", Role.COLLABORATOR)
    forged = tamper(files.csr_path.read_bytes(), b"col2", b"col3")
    before = sorted(store.root.rglob("*"))

    with pytest.raises(PkiError, match="signature is invalid"):
        ca.sign_csr(forged)

    assert sorted(store.root.rglob("*")) == before


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"expected_name": "col9"}, "asks for name 'col2', expected 'col9'"),
     ({"expected_role": Role.ENVOY}, "asks for role 'collaborator', expected 'envoy'")],
)
def test_csr_not_matching_expectations_is_refused(
    tmp_path: Path, ca: CertificateAuthority, kwargs: dict[str, object], message: str
) -> None:
    files = write_csr(tmp_path, "col2", Role.COLLABORATOR)

    with pytest.raises(PkiError, match=message):
        ca.sign_csr(files.csr_path.read_bytes(), **kwargs)  # type: ignore[arg-type]


def _csr_with_subject(attributes: list[x509.NameAttribute]) -> bytes:
    key = generate_private_key()
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes))
    return csr.sign(key, hashes.SHA384()).public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize(
    ("attributes", "message"),
    [([x509.NameAttribute(NameOID.COMMON_NAME, "../etc"),
       x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "collaborator")], "invalid"),
     ([x509.NameAttribute(NameOID.COMMON_NAME, "col"),
       x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "root")], "unknown role 'root'"),
     ([x509.NameAttribute(NameOID.COMMON_NAME, "col")], "OU"),
     ([x509.NameAttribute(NameOID.COMMON_NAME, "col"),
       x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "collaborator"),
       x509.NameAttribute(NameOID.EMAIL_ADDRESS, "a@b.c")], "unexpected attribute"),
     ([x509.NameAttribute(NameOID.COMMON_NAME, "col"),
       x509.NameAttribute(NameOID.ORGANIZATION_NAME, "evil corp"),
       x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "collaborator")], "organisation")],
)
def test_csr_subject_must_be_a_safe_name_and_known_role(
    store: PkiStore, ca: CertificateAuthority, attributes: list[x509.NameAttribute], message: str
) -> None:
    before = sorted(store.root.rglob("*"))

    with pytest.raises(PkiError, match=message):
        ca.sign_csr(_csr_with_subject(attributes))

    assert sorted(store.root.rglob("*")) == before


def test_garbage_is_not_a_csr(ca: CertificateAuthority) -> None:
    with pytest.raises(PkiError, match="not a certificate signing request"):
        ca.sign_csr(b"hello")


def test_existing_certificate_is_not_replaced_by_a_csr(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    ca.certify("col2", Role.COLLABORATOR)
    files = write_csr(tmp_path, "col2", Role.COLLABORATOR)

    with pytest.raises(PkiError, match="exists already"):
        ca.sign_csr(files.csr_path.read_bytes())
    assert ca.sign_csr(files.csr_path.read_bytes(), force=True).key_path is None


def test_write_csr_refuses_to_overwrite_a_key(tmp_path: Path) -> None:
    first = write_csr(tmp_path, "col2", Role.COLLABORATOR)
    key_before = first.key_path.read_bytes()

    with pytest.raises(PkiError, match="exists already"):
        write_csr(tmp_path, "col2", Role.COLLABORATOR)
    assert first.key_path.read_bytes() == key_before


def test_build_csr_signature_is_valid() -> None:
    key = generate_private_key()
    csr = build_csr("env-1", Role.ENVOY, key)

    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "envoy"
