"""Store layout, environment default, identity helpers and the pinned public surface."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

import openfl_like.pki as pki
from openfl_like.core.errors import ConfigError, VerificationError
from openfl_like.core.ids import Role
from openfl_like.pki import (
    CertificateAuthority,
    PkiStore,
    participant_name,
    participant_role,
)
from openfl_like.pki.inventory import list_certificates
from openfl_like.pki.pem import load_certificate

from .conftest import LeafMaker


def test_public_surface_is_pinned() -> None:
    assert sorted(pki.__all__) == [
        "CertificateAuthority", "IssuedCertificate", "PkiStore", "RevocationChecker",
        "participant_name", "participant_role", "verify_certificate",
    ]


def test_store_paths_only_and_no_io(tmp_path: Path) -> None:
    store = PkiStore(tmp_path / "nowhere")

    assert store.cert_path("col") == tmp_path / "nowhere" / "certs" / "col.crt"
    assert store.key_path("col") == tmp_path / "nowhere" / "private" / "col.key"
    assert store.ca_bundle_path.parent == store.crl_path.parent
    assert not (tmp_path / "nowhere").exists()
    with pytest.raises(ConfigError):
        store.cert_path("../../etc/passwd")


def test_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FX_PKI_DIR", raising=False)
    assert PkiStore.from_env().root == Path("pki")
    assert PkiStore.from_env(tmp_path).root == tmp_path
    monkeypatch.setenv("FX_PKI_DIR", str(tmp_path / "env"))
    assert PkiStore.from_env(tmp_path).root == tmp_path / "env"


def test_ca_bundle_holds_signing_then_root(store: PkiStore, ca: CertificateAuthority) -> None:
    bundle = x509.load_pem_x509_certificates(store.ca_bundle_path.read_bytes())

    assert bundle == [ca.signing_cert, ca.root_cert]


def test_identity_is_read_from_the_subject(
    ca: CertificateAuthority, make_leaf: LeafMaker
) -> None:
    cert = load_certificate(ca.certify("env-7", Role.ENVOY).cert_path)

    assert participant_name(cert) == "env-7"
    assert participant_role(cert) is Role.ENVOY
    with pytest.raises(VerificationError) as info:
        participant_role(load_certificate(make_leaf("x", ou="wizard")))
    assert info.value.check == "role"
    with pytest.raises(VerificationError) as info:
        participant_name(load_certificate(make_leaf("bad name", ou="envoy")))
    assert info.value.check == "parse"


def test_inventory_lists_role_serial_expiry_and_revocation(
    store: PkiStore, ca: CertificateAuthority
) -> None:
    agg = ca.certify("agg", Role.AGGREGATOR)
    ca.certify("col", Role.COLLABORATOR)
    ca.revoke("col")
    (store.certs_dir / "broken.crt").write_text("nope")

    rows = {row.name: row for row in list_certificates(store)}

    assert rows["agg"].role is Role.AGGREGATOR and rows["agg"].serial == agg.serial
    assert rows["agg"].not_after == agg.not_after and rows["agg"].status == "valid"
    assert rows["col"].revoked and rows["col"].status == "revoked"
    assert rows["broken"].status == "corrupt"
