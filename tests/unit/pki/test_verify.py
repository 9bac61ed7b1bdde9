"""verify_certificate names the check that fails; each refusal sits next to a success."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from openfl_like.core.errors import PkiError, VerificationError
from openfl_like.core.ids import Role
from openfl_like.pki import CertificateAuthority, PkiStore, verify_certificate
from openfl_like.pki.keys import load_private_key
from openfl_like.pki.pem import load_certificate

from .conftest import LeafMaker


def failed_check(cert: object, store: PkiStore, **kwargs: object) -> str:
    with pytest.raises(VerificationError) as info:
        verify_certificate(cert, store, **kwargs)  # type: ignore[arg-type]
    return info.value.check


def test_valid_certificates_verify_with_their_name_and_role(
    store: PkiStore, ca: CertificateAuthority
) -> None:
    agg = ca.certify("agg", Role.AGGREGATOR)
    col = ca.certify("col_1", Role.COLLABORATOR)

    assert verify_certificate(agg.cert_path, store) == ("agg", Role.AGGREGATOR)
    assert verify_certificate(str(col.cert_path), store, role=Role.COLLABORATOR) == (
        "col_1", Role.COLLABORATOR
    )
    assert verify_certificate(load_certificate(col.cert_path), store)[0] == "col_1"


def test_parse(store: PkiStore, ca: CertificateAuthority, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("not a certificate")

    assert failed_check(garbage, store) == "parse"
    assert failed_check(tmp_path / "missing.crt", store) == "parse"
    assert failed_check(b"\x30\x03\x02\x01\x01", store) == "parse"


def test_chain(store: PkiStore, ca: CertificateAuthority, other_ca: CertificateAuthority) -> None:
    foreign = other_ca.certify("col", Role.COLLABORATOR)

    assert failed_check(foreign.cert_path, store) == "chain"
    # The root alone is not a participant certificate either.
    assert failed_check(store.root_cert_path, store) in {"parse", "chain"}


def test_chain_refuses_a_forged_issuer_name(
    store: PkiStore, ca: CertificateAuthority, tmp_path: Path
) -> None:
    # Another CA whose signing CA has the very same subject name as ours: the signature decides.
    clone_store = PkiStore(tmp_path / "clone")
    clone = CertificateAuthority.init(clone_store)
    clone.signing_cert = ca.signing_cert  # issue with the clone's key under our issuer name
    forged = clone.issue("col", Role.COLLABORATOR, clone._signing_key.public_key())

    with pytest.raises(VerificationError, match="signature does not verify") as info:
        verify_certificate(forged, store)
    assert info.value.check == "chain"


def test_validity(store: PkiStore, ca: CertificateAuthority) -> None:
    past = datetime(2021, 1, 1, tzinfo=timezone.utc)
    expired = ca.certify("old", Role.COLLABORATOR, not_before=past,
                         not_after=past + timedelta(days=1))
    future = ca.certify("new", Role.COLLABORATOR,
                        not_before=datetime.now(timezone.utc) + timedelta(days=3))

    assert failed_check(expired.cert_path, store) == "validity"
    assert failed_check(future.cert_path, store) == "validity"
    # The same certificate is fine at a moment inside its window.
    assert verify_certificate(future.cert_path, store,
                              now=datetime.now(timezone.utc) + timedelta(days=4))[0] == "new"


def test_role(store: PkiStore, ca: CertificateAuthority, make_leaf: LeafMaker) -> None:
    envoy = ca.certify("env", Role.ENVOY)

    assert failed_check(envoy.cert_path, store, role=Role.EXPERIMENTER) == "role"
    assert failed_check(make_leaf("nobody", ou=None), store) == "role"
    assert failed_check(make_leaf("admin", ou="admin"), store) == "role"


def test_key_usage(store: PkiStore, make_leaf: LeafMaker) -> None:
    assert failed_check(make_leaf("enc-only", digital_signature=False), store) == "key_usage"
    assert failed_check(make_leaf("ca-leaf", ca_flag=True), store) == "key_usage"
    assert verify_certificate(make_leaf("fine"), store) == ("fine", Role.COLLABORATOR)


def test_extended_key_usage(store: PkiStore, make_leaf: LeafMaker) -> None:
    as_server = make_leaf("col", eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    agg_as_client = make_leaf("agg", ou="aggregator", eku=[ExtendedKeyUsageOID.CLIENT_AUTH])

    assert failed_check(as_server, store) == "extended_key_usage"
    assert failed_check(agg_as_client, store) == "extended_key_usage"


def test_revoked(store: PkiStore, ca: CertificateAuthority) -> None:
    col = ca.certify("col", Role.COLLABORATOR)
    verify_certificate(col.cert_path, store)

    ca.revoke("col")

    assert failed_check(col.cert_path, store) == "revoked"


def test_no_ca_is_a_pki_error(store: PkiStore, tmp_path: Path) -> None:
    other = CertificateAuthority.init(PkiStore(tmp_path / "x"))
    cert = other.certify("col", Role.COLLABORATOR).cert_path

    with pytest.raises(PkiError, match="no CA"):
        verify_certificate(cert, store)


# -- the chain is cryptography's verifier's decision ------------------------------------------


def test_a_certificate_of_another_ca_fails_at_chain(
    store: PkiStore, ca: CertificateAuthority, other_ca: CertificateAuthority
) -> None:
    ours = ca.certify("col", Role.COLLABORATOR)
    theirs = other_ca.certify("col", Role.COLLABORATOR)
    agg = other_ca.certify("agg", Role.AGGREGATOR, sans=["localhost"])

    assert verify_certificate(ours.cert_path, store) == ("col", Role.COLLABORATOR)
    with pytest.raises(VerificationError, match="not by our signing CA") as info:
        verify_certificate(theirs.cert_path, store)
    assert info.value.check == "chain"
    assert failed_check(agg.cert_path, store) == "chain"  # the server verifier says the same


def test_a_ca_clone_with_our_names_fails_at_chain(
    store: PkiStore, ca: CertificateAuthority, tmp_path: Path
) -> None:
    # Another CA whose root and signing CA carry exactly our subject names: only keys differ.
    clone = CertificateAuthority.init(PkiStore(tmp_path / "clone"))
    clone.root_cert, clone.signing_cert = ca.root_cert, ca.signing_cert
    forged = clone.issue("col", Role.COLLABORATOR, clone._signing_key.public_key())

    with pytest.raises(VerificationError, match="signature does not verify") as info:
        verify_certificate(forged, store)
    assert info.value.check == "chain"


def test_a_leaf_signed_by_the_root_directly_fails_at_chain(
    store: PkiStore, ca: CertificateAuthority
) -> None:
    # The root signs only the signing CA: a participant certificate straight from the root (a
    # valid path for a generic verifier) is not one of ours.
    root_key = load_private_key(store.root_key_path)
    direct = CertificateAuthority(store, root_cert=ca.root_cert, signing_cert=ca.root_cert,
                                  signing_key=root_key)
    leaf = direct.issue("col", Role.COLLABORATOR, ca.signing_cert.public_key())

    assert failed_check(leaf, store) == "chain"


def test_server_certificates_are_chained_by_the_server_verifier(
    store: PkiStore, ca: CertificateAuthority
) -> None:
    by_ip = ca.certify("agg-ip", Role.AGGREGATOR, sans=["127.0.0.1"])
    by_name = ca.certify("agg-dns", Role.AGGREGATOR, sans=["agg.example.org", "10.0.0.1"])

    assert verify_certificate(by_ip.cert_path, store) == ("agg-ip", Role.AGGREGATOR)
    assert verify_certificate(by_name.cert_path, store, role=Role.AGGREGATOR)[0] == "agg-dns"
