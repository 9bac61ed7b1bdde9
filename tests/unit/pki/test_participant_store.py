"""A participant's store: `fx pki import` checks, then writes; verify and list work in it."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from openfl_like.core.errors import PkiError, VerificationError
from openfl_like.core.ids import Role
from openfl_like.pki import CertificateAuthority, PkiStore, verify_certificate
from openfl_like.pki.csr import write_csr
from openfl_like.pki.importing import import_certificate
from openfl_like.pki.inventory import list_certificates
from openfl_like.pki.trust import load_trust, split_bundle


@pytest.fixture
def host(tmp_path: Path) -> PkiStore:
    """A participant host's store holding col1's key and CSR (as `fx pki csr` leaves it)."""
    store = PkiStore(tmp_path / "col-host" / "pki")
    write_csr(store.root, "col1", Role.COLLABORATOR, key_path=store.key_path("col1"),
              csr_path=store.csr_path("col1"))
    return store


def _sign(ca: CertificateAuthority, host: PkiStore, name: str = "col1") -> Path:
    ca.sign_csr(host.csr_path(name).read_bytes(), expected_name=name,
                expected_role=Role.COLLABORATOR)
    return ca.store.cert_path(name)


def test_import_creates_the_folders_and_verify_and_list_work(ca, host):
    # Prepare
    cert = _sign(ca, host)
    assert host.kind() == "empty" and not host.certs_dir.exists()
    # Execute
    done = import_certificate(host, cert_file=cert, ca_bundle_file=ca.store.ca_bundle_path)
    # Assert
    assert (done.name, done.role) == ("col1", Role.COLLABORATOR)
    assert host.cert_path("col1").read_bytes() == cert.read_bytes()
    assert split_bundle(host.ca_bundle_path.read_bytes(), "x") == (ca.root_cert, ca.signing_cert)
    assert host.kind() == "participant" and "participant store" in host.describe_kind()
    assert done.crl_path is None and not host.crl_path.exists()
    assert verify_certificate(host.cert_path("col1"), host) == ("col1", Role.COLLABORATOR)
    rows = list_certificates(host)
    assert [(r.name, r.status, r.revoked) for r in rows] == [("col1", "valid", False)]
    assert load_trust(host).crl is None


def test_import_with_a_crl_checks_revocation_here(ca, host):
    cert = _sign(ca, host)
    ca.revoke("col1")
    with pytest.raises(VerificationError, match="revoked"):
        import_certificate(host, cert_file=cert, ca_bundle_file=ca.store.ca_bundle_path,
                           crl_file=ca.store.crl_path)
    assert not host.certs_dir.exists() and not host.ca_dir.exists()  # nothing written
    # without the CRL the same import passes; with the CRL copied later, verify refuses
    import_certificate(host, cert_file=cert, ca_bundle_file=ca.store.ca_bundle_path)
    host.crl_path.write_bytes(ca.store.crl_path.read_bytes())
    with pytest.raises(VerificationError, match="revoked"):
        verify_certificate(host.cert_path("col1"), host)
    assert [r.status for r in list_certificates(host)] == ["revoked"]


def test_a_certificate_for_another_key_is_refused(ca, host, tmp_path):
    # Prepare: the CA certifies col1 with a key it made itself, not this host's
    ca.certify("col1", Role.COLLABORATOR)
    # Execute / Assert
    with pytest.raises(PkiError, match="issued for another key"):
        import_certificate(host, cert_file=ca.store.cert_path("col1"),
                           ca_bundle_file=ca.store.ca_bundle_path)
    assert not host.cert_path("col1").exists()


def test_a_certificate_of_another_ca_is_refused(ca, other_ca, host):
    cert = _sign(other_ca, host)
    with pytest.raises(VerificationError, match="chain"):
        import_certificate(host, cert_file=cert, ca_bundle_file=ca.store.ca_bundle_path)
    assert not host.cert_path("col1").exists()


def test_a_certificate_without_a_key_here_is_refused(ca, host):
    ca.certify("col2", Role.COLLABORATOR)
    with pytest.raises(PkiError, match="no private key of 'col2'"):
        import_certificate(host, cert_file=ca.store.cert_path("col2"),
                           ca_bundle_file=ca.store.ca_bundle_path)


def test_the_expected_name_is_checked(ca, host):
    cert = _sign(ca, host)
    with pytest.raises(PkiError, match="certificate of 'col1', not of 'col2'"):
        import_certificate(host, cert_file=cert, ca_bundle_file=ca.store.ca_bundle_path,
                           expected_name="col2")


def test_a_different_bundle_needs_force(ca, other_ca, host):
    # Prepare: an earlier import from another CA
    cert = _sign(ca, host)
    host.ca_dir.mkdir(parents=True)
    host.ca_bundle_path.write_bytes(other_ca.store.ca_bundle_path.read_bytes())
    # Execute / Assert
    with pytest.raises(PkiError, match="different CA bundle"):
        import_certificate(host, cert_file=cert, ca_bundle_file=ca.store.ca_bundle_path)
    assert host.ca_bundle_path.read_bytes() == other_ca.store.ca_bundle_path.read_bytes()
    done = import_certificate(host, cert_file=cert, ca_bundle_file=ca.store.ca_bundle_path,
                              force=True)
    assert done.bundle_replaced
    assert verify_certificate(host.cert_path("col1"), host)[0] == "col1"
    # the same bundle again is no replacement
    again = import_certificate(host, cert_file=cert, ca_bundle_file=ca.store.ca_bundle_path)
    assert not again.bundle_replaced


def test_an_older_crl_does_not_roll_back_the_one_here(ca, host):
    cert = _sign(ca, host)
    old_crl = ca.store.crl_path.read_bytes()
    ca.refresh_crl()
    import_certificate(host, cert_file=cert, ca_bundle_file=ca.store.ca_bundle_path,
                       crl_file=ca.store.crl_path)
    assert host.signing_cert_path.read_bytes() == ca.store.signing_cert_path.read_bytes()
    old = host.root / "old-crl.pem"
    old.write_bytes(old_crl)
    with pytest.raises(PkiError, match="older"):
        import_certificate(host, cert_file=cert, ca_bundle_file=ca.store.ca_bundle_path,
                           crl_file=old)


def test_the_signing_cert_must_be_the_bundles(ca, other_ca, host):
    cert = _sign(ca, host)
    with pytest.raises(PkiError, match="not the signing CA"):
        import_certificate(host, cert_file=cert, ca_bundle_file=ca.store.ca_bundle_path,
                           signing_cert_file=other_ca.store.signing_cert_path)


def test_a_bundle_without_its_signing_ca_is_refused(ca, host, tmp_path):
    cert = _sign(ca, host)
    only_root = tmp_path / "root-only.pem"
    only_root.write_bytes(ca.store.root_cert_path.read_bytes())
    with pytest.raises(PkiError, match="signing CA and the root CA"):
        import_certificate(host, cert_file=cert, ca_bundle_file=only_root)


def test_a_participant_store_refuses_init_and_signing_with_its_kind(ca, host):
    import_certificate(host, cert_file=_sign(ca, host), ca_bundle_file=ca.store.ca_bundle_path)
    with pytest.raises(PkiError, match=r"participant store .* belongs on the CA host"):
        CertificateAuthority.init(host)
    with pytest.raises(PkiError, match=r"participant store .* on the CA host"):
        CertificateAuthority.load(host)


def test_an_empty_store_says_what_to_run(tmp_path):
    store = PkiStore(tmp_path / "nothing")
    with pytest.raises(PkiError, match=r"empty store .*fx pki init.*fx pki import"):
        load_trust(store)


def test_ca_store_trust_is_unchanged(ca):
    trust = load_trust(ca.store)
    assert trust.kind == "ca" and trust.crl is not None
    assert isinstance(trust.root, x509.Certificate)
